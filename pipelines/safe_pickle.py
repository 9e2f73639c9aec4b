"""A restricted unpickler for proposal files from the internet: data only, never code.

Allowed: the builtin containers and numbers pickle writes natively, numpy arrays and dtypes (through the
few numpy reconstruction functions they need). Any other global — `os.system`, `builtins.eval`, a class
of some package — is refused before it is looked up, so a malicious pickle cannot run anything.
"""
from __future__ import annotations

import io
import pickle
from typing import BinaryIO

# (module, name) pairs a pickle of plain data and numpy arrays needs. numpy 2 moved `core` to `_core`;
# files written by numpy 1 name the old module, so both spellings are listed.
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "dict"),
    ("builtins", "float"),
    ("builtins", "int"),
    ("builtins", "complex"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    # Protocols 0-2 have no bytes opcode and spell bytes as _codecs.encode(str, "latin1"): text in, bytes out.
    ("_codecs", "encode"),
})

PYTHON2_MODULES = {"__builtin__": "builtins"}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for something other than plain data."""


class DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO, source: str):
        super().__init__(handle)
        self.source = source

    def find_class(self, module: str, name: str):
        # Python 2 era pickles (protocol <= 2) name the builtins module `__builtin__`.
        if (PYTHON2_MODULES.get(module, module), name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: refusing to load {module}.{name} — this file asks to run code or build objects, "
                f"but only lists, tuples, dicts, numbers and numpy arrays are accepted")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: persistent ids are not accepted in a data pickle")


def load_data_pickle(data: bytes, source: str) -> object:
    """Unpickle `data` allowing only plain data; `source` names the file in errors."""
    try:
        return DataOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise UnsafePickleError(f"{source} is not a readable data pickle: {error}") from error
