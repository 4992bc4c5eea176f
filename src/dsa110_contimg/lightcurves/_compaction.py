"""Compaction of the light-curve store: epochs merged into runs sorted by source.

Runs (``by_source/<name>/*.parquet``) are an index: the epoch files stay the
truth. New epochs are merged size-tiered as they arrive (`_maybe_compact`)
and all at once by `compact`.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

from dsa110_contimg.lightcurves._lock import locked
from dsa110_contimg.lightcurves._runs import write_run
from dsa110_contimg.utils.storage import fsync_tree

__all__: list[str] = []

log = logging.getLogger("dsa110_contimg.lightcurves._store")

_TOP_LEVEL = 99  # level of the run written by a full compaction


class _StoreCompaction:
    """The compaction half of `LightcurveStore` (it sets the attributes used here).

    Uses ``root``, ``auto_compact_epochs``, ``row_group_size`` and the store's
    manifest, connection and query plan methods.
    """

    root: Any
    auto_compact_epochs: int
    row_group_size: int

    @locked
    def compact(self) -> int:
        """Merge every epoch into one run sorted by source; return its rows.

        Returns
        -------
        int
            Rows in the new run.

        Notes
        -----
        Runs (``by_source/<name>/*.parquet``) are an index: the epoch files
        stay the truth, and an epoch replaced or deleted after it was merged
        is hidden in its run. Between full compactions the store merges on
        its own (size-tiered, like a log-structured merge tree): every
        ``auto_compact_epochs`` new epochs become a level-1 run, and
        ``auto_compact_epochs`` runs of one level become one run of the next,
        so a light-curve read touches a bounded number of files while each
        row is rewritten only a logarithmic number of times. A full
        compaction needs about as much free disk as the store holds.
        """
        manifest = self._load_manifest()
        epochs = sorted(manifest["epochs"])
        if not epochs:
            return 0
        replaced = [run["name"] for run in manifest.get("runs", [])]
        return self._merge(epochs, level=_TOP_LEVEL, replaced=replaced)

    def _merge(self, epoch_ids: list[str], *, level: int, replaced: list[str]) -> int:
        """Write the given epochs as one run sorted by source, replacing runs."""
        manifest = json.loads(json.dumps(self._load_manifest()))
        epochs = {
            e: manifest["epochs"][e] for e in epoch_ids if e in manifest["epochs"]
        }
        if not epochs:
            manifest["runs"] = [
                r for r in manifest.get("runs", []) if r["name"] not in replaced
            ]
            self._save_manifest(manifest)
            for old in replaced:
                shutil.rmtree(self.root / "by_source" / old, ignore_errors=True)
            return 0
        counter = manifest.get("run_counter", 0) + 1
        name = f"L{level}-{counter:06d}"
        out = self.root / "by_source" / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        files = [str(self._epoch_file(v)) for v in epochs.values()]
        entries = write_run(
            self._connection(),
            self.root,
            files,
            out,
            row_group_size=self.row_group_size,
        )
        fsync_tree(out)  # on disk before the manifest names it
        runs = [r for r in manifest.get("runs", []) if r["name"] not in replaced]
        runs.append(
            {
                "name": name,
                "level": level,
                "files": sorted(
                    entries, key=lambda f: (f["min_source"], f["max_source"])
                ),
                "epochs": {e: v["token"] for e, v in epochs.items()},
            }
        )
        manifest["runs"] = runs
        manifest["run_counter"] = counter
        self._save_manifest(manifest)
        for old in replaced:
            shutil.rmtree(self.root / "by_source" / old, ignore_errors=True)
        n_rows = sum(f["n_rows"] for f in entries)
        log.info(
            "store runs merged",
            extra={"run": name, "n_rows": n_rows, "n_epochs": len(epochs)},
        )
        return int(n_rows)

    def _maybe_compact(self) -> None:
        """Merge new epochs and full levels of runs (size-tiered)."""
        fan_in = self.auto_compact_epochs
        if fan_in < 2:
            return
        plan = self._query_plan()
        if len(plan["delta_epochs"]) >= fan_in:
            self._merge(list(plan["delta_epochs"]), level=1, replaced=[])
        level = 1
        while level < _TOP_LEVEL:
            manifest = self._load_manifest()
            same = [r for r in manifest.get("runs", []) if r["level"] == level]
            if len(same) < fan_in:
                level += 1
                continue
            current = manifest["epochs"]
            epoch_ids = sorted(
                e
                for r in same
                for e, tok in r["epochs"].items()
                if current.get(e, {}).get("token") == tok
            )
            self._merge(epoch_ids, level=level + 1, replaced=[r["name"] for r in same])
