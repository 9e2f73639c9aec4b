"""Verified reads: a file's bytes against what its commit record says (size, checksum), before anyone parses them.

Commit records carry two digests of each file: `sha256` (provenance, and what `validate` checks) and `checksum`, an
XXH3-64 of the same bytes that readers check every time they open a file. XXH3 is not cryptographic; it is there to
catch damage (a flipped byte, a truncated copy, a file replaced under its name), which it does with a 2**-64 chance
of a miss, at a cost small beside parsing: `python -m bench.verified_reads` measures both digests against a plain
read of the same shards (on our 2-core AMD EPYC with SHA-NI: XXH3-64 about 25 GB/s, OpenSSL's sha256 0.5-0.8 GB/s;
the checks under 1% of the trainer's store reading, a sha256 check about 15% more reader CPU). Records written
before the checksum existed are checked with their sha256.
"""
from __future__ import annotations

import hashlib

import xxhash

from featurestore.manifest import CommitRecord, DamagedStoreError, FileEntry
from featurestore.stages import EXTRACT_FEATURES, PROPOSALS, PSEUDO_LABELS

CHECKSUM_ALGORITHM = "xxh3_64"
# The command whose resume recomputes a damaged shard of each stage (stage tables such as vocab included).
REPAIR_COMMANDS = {PROPOSALS: "python -m beam_jobs.proposals",
                   EXTRACT_FEATURES: "python -m beam_jobs.extract_features",
                   PSEUDO_LABELS: "python -m beam_jobs.pseudo_labels"}


class DamagedFileError(DamagedStoreError):
    """A file whose bytes are not the ones its commit record names: the store is damaged there."""


def content_checksum(data) -> str:
    """`xxh3_64:<16 hex digits>` of `data` (bytes or any buffer: an Arrow buffer, a memoryview)."""
    return f"{CHECKSUM_ALGORITHM}:{xxhash.xxh3_64_hexdigest(data)}"


def mismatch(data, entry: FileEntry) -> str | None:
    """Why `data` is not the file `entry` names, or None when it is."""
    if len(data) != entry.bytes:
        return f"{len(data)} bytes, the commit record says {entry.bytes}"
    if entry.checksum is not None:
        if content_checksum(data) != entry.checksum:
            return f"its {CHECKSUM_ALGORITHM} checksum differs from the commit record's"
    elif hashlib.sha256(data).hexdigest() != entry.sha256:
        return "its sha256 differs from the commit record's"
    return None


def repair_command(stage: str) -> str:
    """What recomputes a damaged shard of `stage` (`extract_features.vocab` belongs to extract_features)."""
    base = stage.split(".")[0]
    return REPAIR_COMMANDS.get(base, f"the {base} job")


def damaged_file_message(where: str, record: CommitRecord, reason: str) -> str:
    """The refusal of a damaged file: which file, which shard, why, and what repairs it."""
    return (f"{where} (shard {record.shard} of stage {record.stage}) does not match its commit record: {reason}. "
            f"The store is damaged there; rerun {repair_command(record.stage)} with the same config and --store: its "
            f"resume recomputes exactly the damaged shards (`python -m featurestore validate STORE` lists them)")


def verified(data, entry: FileEntry, record: CommitRecord, where: str):
    """`data`, after checking it is the file `entry` names; DamagedFileError (naming `where`) when it is not."""
    reason = mismatch(data, entry)
    if reason is not None:
        raise DamagedFileError(damaged_file_message(where, record, reason))
    return data
