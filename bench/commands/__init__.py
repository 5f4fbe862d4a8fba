"""The command line's commands, one module each: ``main(args) -> exit status``.

:mod:`bench.cli` parses the arguments and imports only the module of the command it runs, so
``bench --help`` and ``bench validate`` do not pay for what other commands use (matplotlib, the
runner, ONNX export).
"""
