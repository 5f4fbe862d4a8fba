from __future__ import annotations

import pytest
import torch

from cascade import StudyCNN, build_model
from cascade.models import MODELS


@pytest.mark.parametrize("name", MODELS.names())
def test_registered_models_build_and_run(name: str) -> None:
    exits = MODELS.get(name).example_exits
    assert exits, f"{name} declares no example_exits"
    model = build_model(name, exits=list(exits), num_classes=10, in_channels=1, input_size=28).eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.num_exits == len(exits) + 1 and out.final.shape == (3, 10)
    assert model.exit_names[:-1] == tuple(exits)


def test_study_cnn_shapes_and_exit_heads() -> None:
    model = StudyCNN(exits=("p1", "p2"))
    assert model.exit_names == ("p1", "p2", "final")
    # exit heads: Flatten -> Linear from (32, 14, 14) and (64, 7, 7)
    assert model.exits["p1"][1].in_features == 32 * 14 * 14
    assert model.exits["p2"][1].in_features == 64 * 7 * 7
    assert model.classifier[1].in_features == 128 * 3 * 3
    assert len(model.exit_segments) == 3 and len(model.exit_heads) == 3


def test_base_checkpoint_loads_into_exit_model() -> None:
    base = StudyCNN()
    with_exit = StudyCNN(exits=("p2",))
    result = with_exit.load_state_dict(base.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith(with_exit.exit_parameter_prefixes()) for k in result.missing_keys)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(base.eval()(x).final, with_exit.eval()(x).final)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"exits": ["p4"]}, "blocks 1..3"),
        ({"exits": ["x1"]}, "expected 'p<k>'"),
        ({"exits": ["p1", "p1"]}, "duplicate"),
        ({"dropout": [0.1, 0.2]}, "one per block"),
        ({"channels": []}, "non-empty"),
    ],
)
def test_bad_model_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyCNN(**kwargs)


def test_dropout_is_switchable_per_block() -> None:
    model = StudyCNN(dropout=[0.0, 0.3, 0.0])
    kinds = [[type(m).__name__ for m in block] for block in model.blocks]
    assert "Dropout" not in kinds[0] and "Dropout" in kinds[1] and "Dropout" not in kinds[2]
    assert kinds[1] == ["Conv2d", "BatchNorm2d", "Dropout", "MaxPool2d", "ReLU"]


class _Previous(torch.nn.Module):
    """A head that adds the previous exit's logits to a linear layer's (cascading only when told so)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(features, 10)

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.flatten(1))
        return out if previous is None else out + previous


def test_a_head_is_cascading_by_its_class_or_its_own_attribute() -> None:
    model = StudyCNN(exits=("p1",), channels=(4, 6, 8), hidden=16).eval()
    head = _Previous(6 * 7 * 7)
    model.exit_heads[1] = head
    h = torch.randn(2, 6, 7, 7)
    previous = torch.full((2, 10), 100.0)
    plain = model.head_logits(1, h, previous)  # no takes_previous anywhere: previous not passed
    torch.testing.assert_close(plain, head.linear(h.flatten(1)))
    head.takes_previous = True  # on the instance (nn.Module keeps it in the instance dict)
    torch.testing.assert_close(model.head_logits(1, h, previous), plain + 100.0)
    with pytest.raises(ValueError, match="exit 2's head is cascading"):
        model.head_logits(1, h, None)
    del head.takes_previous
    type(head).takes_previous = True  # on the class, as cascade.heads declares it
    try:
        torch.testing.assert_close(model.head_logits(1, h, previous), plain + 100.0)
    finally:
        del type(head).takes_previous
