"""Reading inputs and writing outputs the way a mail gateway must.

Outputs are written to a temporary file in the destination folder and renamed into place
only when the whole output is good (no partial output file, ever). OS
errors are mapped to the sysexits statuses: 66 for inputs, 73 when an output cannot be
created, 74 for an I/O error while writing.

Modules: :mod:`~smimecli.files.mapped` (OS errors as smimecli errors, mapped streams),
:mod:`~smimecli.files.temporaries` (our temporary files, stale ones cleaned) and
:mod:`~smimecli.files.atomic` (atomic outputs). Every name is importable from
``smimecli.files`` itself.
"""

from __future__ import annotations

from smimecli.files.atomic import PendingOutputs, atomic_output, write_atomic
from smimecli.files.mapped import (
    MappedReader,
    MappedWriter,
    input_error,
    open_input,
    output_error,
    read_input,
    reader,
)
from smimecli.files.temporaries import (
    LIVE_TEMPORARIES,
    STALE_AFTER,
    STALE_ANYWAY,
    clean_stale_temporaries,
    remove_dead_temporaries,
    remove_temporaries,
)

__all__ = [
    "LIVE_TEMPORARIES",
    "STALE_AFTER",
    "STALE_ANYWAY",
    "MappedReader",
    "MappedWriter",
    "PendingOutputs",
    "atomic_output",
    "clean_stale_temporaries",
    "input_error",
    "open_input",
    "output_error",
    "read_input",
    "reader",
    "remove_dead_temporaries",
    "remove_temporaries",
    "write_atomic",
]
