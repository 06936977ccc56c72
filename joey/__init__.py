"""Joey's kernel: the formats, names, constants, errors, verified transport, signing primitives and the Ops wire
contract that every app (packager, engine, opscenter, infra) imports. It imports no app."""

__version__ = "0.1.0"
