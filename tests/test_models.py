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
