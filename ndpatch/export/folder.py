"""The export folder: its lock, its state files, and the only files an export ever deletes.

``OUT_DIR/.ndpatch-export/`` holds an export's state::

    lock                 the cross-process lock, held for a whole run (never deleted)
    owner.json           who holds the lock: pid, host, start time (removed on release)
    settings.json        the export's settings
    plan.npy             its windows, one row (gid, row_start, col_start) per chip
    parts/000012.json    the manifest of each finished block (:mod:`ndpatch.export.manifest`)

The lock is taken before anything in the folder is read, changed or removed,
so a second export (``--overwrite``, ``--resume`` or a plain one) refuses
while another runs, naming it. Deletes are confined: a file is removed only
when its name is one a writer's :class:`~ndpatch.export.base.NamingRule`
produces, in the rule's folder, and that folder lies inside the export folder
(no ``..``, no absolute path, no symbolic link out of it). Names read from
part files are never deleted as such.

Example:
    >>> import tempfile
    >>> from ndpatch.export.chips import IMAGE_CHIPS
    >>> folder = ExportFolder(tempfile.mkdtemp())
    >>> (folder.root / "images").mkdir()
    >>> for name in ("chip_000003.tif", "notes.txt", "chip_3.tif"):
    ...     _ = (folder.root / "images" / name).write_text("x")
    >>> with folder.locked():
    ...     folder.remove_files([IMAGE_CHIPS])
    1
    >>> sorted(p.name for p in (folder.root / "images").iterdir())
    ['chip_3.tif', 'notes.txt']
"""
from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
import numpy as np

from ndpatch.cache.store import TEMP_MARK
from ndpatch.errors import ExportError, ExportInProgressError, OutputExistsError
from ndpatch.export.base import NamingRule, publish

#: Where an export keeps its lock, plan, settings and part files.
STATE_DIR = ".ndpatch-export"
#: ``.ndpatch-export/parts/000012.json``: the manifest of block 12.
PART_FILES = NamingRule(f"{STATE_DIR}/parts", "", ".json")
#: Dataset-level files every export writes (``data.kwcoco.json``: the kwcoco format).
INDEX_FILES = ("chips.csv", "classes.json", "summary.json", "data.kwcoco.json")
#: The state files beside the parts (the lock is never deleted).
STATE_FILES = ("settings.json", "plan.npy", "owner.json")


class ExportFolder:
    """One export's output folder: lock, state, part files, confined deletes."""

    def __init__(self, path: str | os.PathLike):
        self.root = Path(path)
        self.state = self.root / STATE_DIR

    # -- what is there ----------------------------------------------------------------
    def holds_export(self) -> bool:
        """Whether an export has started here (its settings are recorded)."""
        return (self.state / "settings.json").is_file()

    def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())

    def settings(self) -> dict:
        """The recorded settings; ExportError when unreadable."""
        try:
            settings = json.loads((self.state / "settings.json").read_text())
        except (OSError, ValueError) as err:
            raise ExportError(f"{self.root}: cannot read the export's settings: {err}") from err
        if not isinstance(settings, dict):
            raise ExportError(f"{self.root}: {STATE_DIR}/settings.json is not an object")
        return settings

    def plan_path(self) -> Path:
        return self.state / "plan.npy"

    def part_path(self, block: int) -> Path:
        return self.root / PART_FILES.name(block)

    def parts(self) -> list[int]:
        """The blocks that have a part file, in order."""
        return sorted(number for number, _ in self._listed(PART_FILES))

    def read_part(self, block: int) -> dict | None:
        """Block ``block``'s manifest; None when missing or unreadable."""
        try:
            part = json.loads(self.part_path(block).read_text())
        except (OSError, ValueError):
            return None
        return part if isinstance(part, dict) else None

    def write_part(self, block: int, manifest: dict) -> None:
        publish(self.part_path(block), lambda tmp: Path(tmp).write_text(json.dumps(manifest)))

    def start(self, settings: dict, plan_table: np.ndarray, rules: Iterable[NamingRule]) -> None:
        """Record a run's settings and plan; the completion marker (``summary.json``) goes first.

        Refuses a folder the run would write into through a link out of the export folder.
        """
        self._refuse_links(sorted({rule.folder for rule in rules} | {PART_FILES.folder}))
        self._unlink("", "summary.json")
        publish(self.state / "settings.json", lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1)))
        publish(self.plan_path(), lambda tmp: np.save(tmp, plan_table))

    # -- the lock ---------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock, or refuse with ExportInProgressError naming the process that holds it."""
        self._refuse_links([STATE_DIR])
        self.state.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.state / "lock"), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise ExportInProgressError(
                f"another export is writing into {self.root} ({self.owner()}); wait for it to finish "
                "or stop it, then rerun") from None
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
            publish(self.state / "owner.json", lambda tmp: Path(tmp).write_text(json.dumps(owner)))
            yield
        finally:
            self._unlink(STATE_DIR, "owner.json")
            lock.release()

    def owner(self) -> str:
        """Who holds the lock, as its owner.json says."""
        try:
            owner = json.loads((self.state / "owner.json").read_text())
            return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its process has not recorded itself yet"

    # -- confined deletes -------------------------------------------------------------
    def remove_files(self, rules: Iterable[NamingRule], keep: dict[NamingRule, int] | None = None) -> int:
        """Remove the published files of ``rules`` (those numbered ``>= keep[rule]`` when given); returns how many."""
        removed = 0
        for rule in rules:
            limit = None if keep is None else keep[rule]
            for number, name in self._listed(rule):
                if limit is None or number >= limit:
                    removed += self._unlink(rule.folder, name)
        return removed

    def remove_temp_files(self, rules: Iterable[NamingRule]) -> None:
        """Remove temp files left by publishes cut short (a kill, a full disk): only those of the export's names."""
        for rule in [*rules, PART_FILES]:
            for name in self._entries(rule.folder):
                if rule.is_temp(name):
                    self._unlink(rule.folder, name)
        for folder, fixed in [("", name) for name in INDEX_FILES] + [(STATE_DIR, name) for name in STATE_FILES]:
            for name in self._entries(folder):
                stem, mark, _ = name.partition(TEMP_MARK)
                if mark and stem == Path(fixed).stem:
                    self._unlink(folder, name)

    def clear(self, rules: Iterable[NamingRule]) -> None:
        """Remove a previous export (what ``overwrite`` replaces): its files, index files and state, not the lock."""
        self.remove_files([*rules, PART_FILES])
        self.remove_temp_files(rules)
        for name in INDEX_FILES:
            self._unlink("", name)
        for name in ("settings.json", "plan.npy"):
            self._unlink(STATE_DIR, name)

    def remove_part(self, block: int) -> None:
        self._unlink(PART_FILES.folder, PART_FILES.file_name(block))

    def _refuse_links(self, folders: Iterable[str]) -> None:
        for folder in folders:
            if os.path.lexists(self.root / folder) and self._folder(folder) is None:
                raise ExportError(f"{self.root / folder} is not a folder inside {self.root} (a link out of it?); "
                                  "an export writes only inside its folder")

    def _folder(self, folder: str) -> Path | None:
        """``root/folder`` when it is a real folder inside the export folder (no link out of it), else None."""
        root = self.root.resolve()
        path = root.joinpath(folder) if folder else root
        if ".." in Path(folder).parts or Path(folder).is_absolute() or not path.is_dir() or path.resolve() != path:
            return None
        return path

    def _entries(self, folder: str) -> list[str]:
        path = self._folder(folder)
        return [] if path is None else [entry.name for entry in os.scandir(path)
                                         if not entry.is_dir(follow_symlinks=False)]

    def _listed(self, rule: NamingRule) -> Iterator[tuple[int, str]]:
        for name in self._entries(rule.folder):
            number = rule.number(name)
            if number is not None:
                yield number, name

    def _unlink(self, folder: str, name: str) -> int:
        """Remove file ``name`` (a bare name) of ``folder`` when both are confined; returns 1 if removed."""
        path = self._folder(folder)
        if path is None or "/" in name or name in ("", ".", ".."):
            return 0
        try:
            os.unlink(path / name)
        except (FileNotFoundError, IsADirectoryError):
            return 0
        return 1

    # -- the flags --------------------------------------------------------------------
    def check_before_lock(self, resume: bool, overwrite: bool) -> None:
        """Refuse a non-empty folder that holds no export (unless ``overwrite``), without touching it."""
        if self.root.exists() and not self.root.is_dir():
            raise OutputExistsError(f"output folder {self.root} exists and is not a folder")
        if self.is_empty() or self.state.is_dir():
            return
        if resume:
            raise OutputExistsError(f"{self.root} is not empty and holds no ndpatch export to resume")
        if not overwrite:
            raise self._not_empty()

    def prepare(self, settings: dict, resume: bool, overwrite: bool, rules: Iterable[NamingRule]) -> bool:
        """Under the lock: check the flags against what is there; returns True when a previous export is resumed."""
        if not self.holds_export():
            return False
        if resume:
            previous = self.settings()
            changed = sorted(key for key in settings if previous.get(key) != settings[key])
            if changed:
                raise ExportError(f"{self.root}: cannot resume, the export settings differ in {', '.join(changed)}")
            return True
        if not overwrite:
            raise self._not_empty()
        self.clear(rules)
        return False

    def _not_empty(self) -> OutputExistsError:
        return OutputExistsError(f"output folder {self.root} exists and is not empty; "
                                 "pass resume=True (--resume) or overwrite=True (--overwrite)")
