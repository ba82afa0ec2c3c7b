"""Host adapter for Camtrap DP packages (1.0, 1.0.1, 1.0.2).

Reading: every media with a local filePath (and, with --fetch-remote, every http(s) one) is
classified; sequences are formed within each deployment.  Writing: DeepFaune's observations
are added at media and event level, the package metadata (taxonomic, observationLevel) is
completed, the result is validated, the previous files are backed up and the new ones
swapped in.  With a plain folder or camtrapR tree as source, a new package is created instead
(see camtrapdp_create).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from deepfaune_plugin.api import (Decision, FolderLock, Host, HostOption, Manifest, MediaItem, Problem, RunResults,
                                  fields_given, fields_note, hookimpl,
                                  recover, say)

from . import create
from deepfaune_plugin.hooks.camtrapdp.observations import FIELD_COLUMNS, MediaInfo, build_rows, classification_time
from deepfaune_plugin.hooks.camtrapdp.labels import human_labels
from deepfaune_plugin.hooks.camtrapdp.fetch import FetchLimits, MediaCache, cache_name, fetch_all
from deepfaune_plugin.hooks.camtrapdp.package import (DESCRIPTOR, Package, PackageError, RawTable, is_package, list_media, load_package,
                                media_rows, package_root, read_table)
from deepfaune_plugin.hooks.camtrapdp.schema import (OBSERVATIONS, deployment_coordinates, deployment_days, format_datetime,
                                                    parse_datetime)
from deepfaune_plugin.hooks.camtrapdp.write import backup, clear_partial_backups, enrich, swap_in

REMOTE_PREFIX = "~remote/"  # relpaths of fetched media: no package filePath can start with "~"
MAX_LISTED = 10
LOCK_NAME = ".deepfaune.lock"  # held from read to write: one enrichment of a package at a time
JOURNAL_NAME = ".deepfaune-commit.json"  # an enrichment's commit in progress (see deepfaune_plugin.transaction)


@dataclass
class PackageState:
    """What read() learnt and write() needs (Manifest.host_state)."""

    package: Package
    observations_bytes: bytes | None
    observations: RawTable
    deployment_ids: set[str]
    media_ids: set[str]
    media: dict[str, MediaInfo] = field(default_factory=dict)  # relpath -> MediaInfo
    lock: FolderLock | None = None  # released by write(), or when a failed run drops the manifest


def _listed(rows, what: str) -> str:
    names = [r.file_path for r in rows[:MAX_LISTED]]
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"{len(rows)} {what}: {', '.join(names)}{more}"


class CamtrapDPHost(Host):
    name = "camtrapdp"
    description = ("a Camtrap DP package (datapackage.json): adds DeepFaune observations; "
                   "or a folder/camtrapR tree turned into a new package with --output NEWDIR")
    labels_held = "no human observation of its media maps to a DeepFaune label"
    options: tuple[HostOption, ...] = (
        HostOption("fetch-remote", "download media given by an http(s) URL into a cache and classify them", flag=True),
        HostOption("media-cache", "folder for downloaded media (default: <package>/.deepfaune_cache)"),
        HostOption("fetch-timeout", "--fetch-remote: seconds one download may take in all (default 300)"),
        HostOption("fetch-max-mb", "--fetch-remote: largest file downloaded, in MB (default 2000)"),
        HostOption("fetch-workers", "--fetch-remote: downloads at once (default 4)"),
        HostOption("fetch-allow-private", "--fetch-remote: also fetch from private and loopback addresses (a lab's "
                                          "own network; refused by default)", flag=True),
        HostOption("skip-missing", "classify the other media when some local media files are missing "
                                   "(default: stop)", flag=True),
        HostOption("deployments-csv", "new package: CSV with one row per station (station, latitude, longitude, "
                                      "deploymentStart, deploymentEnd, ...)"),
        HostOption("package-metadata", "new package: YAML or JSON with contributors, project and other metadata"),
        HostOption("utc-offset", "new package: UTC offset of the camera clocks, e.g. +01:00"),
        HostOption("link-media", "new package: hard-link the media into it instead of copying them", flag=True),
        HostOption("lock-wait", "seconds to wait while another DeepFaune run enriches the same package "
                                "(default 0: stop at once with a message)"),
    )
    priority = 20

    def detect(self, source: Path) -> bool:
        return is_package(Path(source))

    # ------------------------------------------------------------------ read
    def read(self, source: Path, options: Mapping[str, Any]) -> Manifest:
        source = Path(source)
        if source.is_dir() and not (source / DESCRIPTOR).exists():
            return create.read_folder(source, options, self.name)
        lock = open_package(package_root(source), options)
        try:
            return self._read(source, options, lock)
        except BaseException:
            lock.release()
            raise

    def _read(self, source: Path, options: Mapping[str, Any], lock: FolderLock) -> Manifest:
        package = load_package(source)
        root = package.root
        self._check_output(options.get("output"), package)
        where_media = str(package.paths["media"].relative_to(root))
        media_table = read_table(package.paths["media"], where_media)
        rows = media_rows(media_table, where_media)
        dep_table = read_table(package.paths["deployments"], str(package.paths["deployments"].relative_to(root)))
        if "deploymentID" not in dep_table.header:
            raise PackageError(f"{package.paths['deployments']}: no 'deploymentID' column")
        deployment_ids = {r["deploymentID"] for r in dep_table.rows}
        self._check_media(rows, deployment_ids, where_media)
        obs_path = package.paths["observations"]
        observations_bytes = obs_path.read_bytes() if obs_path.is_file() else None
        observations = read_table(obs_path, str(obs_path.relative_to(root)), [f.name for f in OBSERVATIONS])
        needed = [f.name for f in OBSERVATIONS if f.name not in ("cameraSetupType", "lifeStage", "sex", "behavior",
                                                                  "individualID", "individualPositionRadius",
                                                                  "individualPositionAngle", "individualSpeed",
                                                                  "observationTags")]
        absent = [name for name in needed if name not in observations.header]
        if absent:
            raise PackageError(f"{obs_path}: no column {', '.join(absent)}; DeepFaune's observations need them")

        state = PackageState(package, observations_bytes, observations, deployment_ids, {r.media_id for r in rows},
                             lock=lock)
        listing = list_media(root, rows, where_media)
        problems: list[Problem] = []
        if listing.missing:
            message = _listed(listing.missing, "media files are missing")
            if not options.get("skip_missing"):
                raise PackageError(f"{root}: {message}; nothing was classified "
                                   "(use --skip-missing to classify the others)")
            problems.extend(Problem(r.file_path, "media file is missing; skipped") for r in listing.missing)
        problems.extend(Problem(r.file_path, f"skipped: {why}") for r, why in listing.unsupported)

        items: list[MediaItem] = []
        for row, path in listing.local:
            items.append(self._item(state, row, path, row.file_path))
        if listing.remote and not options.get("fetch_remote"):
            problems.append(Problem(where_media, _listed(listing.remote, "media given by URL were skipped") +
                                    " (use --fetch-remote to download and classify them)",
                                    skipped=len(listing.remote)))
        elif listing.remote:
            limits = FetchLimits.from_options(options)
            items.extend(self._fetch(state, listing.remote, root, options.get("media_cache"), limits, problems))
        labels, notes = human_labels(observations.rows, state.media, package.descriptor)  # for evaluations
        problems.extend(notes)
        coordinates, refused = deployment_coordinates(dep_table.rows)
        where_deployments = str(package.paths["deployments"].relative_to(root))
        problems.extend(Problem(where_deployments, why, skipped=0) for why in refused)
        return Manifest(root=root, items=items, problems=problems, host=self.name, host_state=state,
                        trap_days=deployment_days(dep_table.rows), station_coordinates=coordinates,
                        human_labels=labels)

    def _fetch(self, state: PackageState, rows, root: Path, chosen, limits: FetchLimits,
               problems: list[Problem]) -> list[MediaItem]:
        """The remote media, fetched (or found in the cache); what could not be is skipped and said: one
        line per media for a failed download, one line for all the media of a server that cannot be reached."""
        cache = MediaCache.open(root, chosen)
        say(f"fetching {len(rows)} remote media into {cache.folder} (once; kept for later runs)")
        try:
            done = fetch_all(rows, cache, limits)
        finally:
            cache.close()
        for row, why in done.failed:
            problems.append(Problem(row.file_path, f"download failed ({why}); skipped"))
        for host, (why, lost) in done.unreachable.items():
            problems.append(Problem(host, _listed(lost, f"remote media not fetched: {host} cannot be reached "
                                                        f"({why}); skipped")))
        for host, (why, lost) in done.refused.items():
            problems.append(Problem(host, _listed(lost, f"remote media not fetched: {why}; skipped")))
        skipped = len(rows) - len(done.files)
        say(f"remote media: {len(done.files)} of {len(rows)} ready ({done.reused} already in the cache)"
              + (f", {skipped} skipped" if skipped else ""))
        return [self._item(state, row, path, REMOTE_PREFIX + cache_name(row)) for row, path in done.files]

    @staticmethod
    def _check_output(output, package: Package) -> None:
        """An existing package is enriched in place: an --output elsewhere would be ignored, so it is refused."""
        if not output:
            return
        target = Path(output).resolve()
        if target in (package.root.resolve(), package.descriptor_path.resolve()):
            return  # the package itself: what enrichment writes anyway
        raise PackageError(f"--output {output}: a Camtrap DP package is enriched in place (its observations.csv and "
                           f"datapackage.json, the old ones kept in {package.root / '.deepfaune_backups'}); "
                           "--output names a new package made from a folder or camtrapR tree. To keep the package "
                           "as it is, copy it and run on the copy; nothing was done")

    @staticmethod
    def _check_media(rows, deployment_ids: set[str], where: str) -> None:
        seen: set[str] = set()
        duplicates = sorted({r.media_id for r in rows if r.media_id in seen or seen.add(r.media_id)})
        if duplicates:
            raise PackageError(f"{where}: mediaID used more than once: {', '.join(duplicates[:MAX_LISTED])}")
        orphans = sorted({r.deployment_id for r in rows if r.deployment_id not in deployment_ids})
        if orphans:
            raise PackageError(f"{where}: deploymentID not in the deployments table: {', '.join(orphans[:MAX_LISTED])}")

    @staticmethod
    def _item(state: PackageState, row, path: Path, relpath: str) -> MediaItem:
        state.media[relpath] = MediaInfo(row.media_id, row.deployment_id, row.timestamp)
        wall_clock = parse_datetime(row.timestamp).replace(tzinfo=None)  # EXIF-like local time
        # sequences stay within a deployment and, as in DeepFaune, within a folder
        folder = "" if row.is_remote else row.file_path.rpartition("/")[0]
        group = f"{row.deployment_id}:{folder}" if folder else row.deployment_id
        return MediaItem(path=path, relpath=relpath, group=group, timestamp=wall_clock,
                         station=row.deployment_id, host_key=row.media_id)

    def release(self, manifest: Manifest) -> None:
        """Read only (evaluate, review): the package's lock goes now, not at a write that will not come."""
        lock = getattr(manifest.host_state, "lock", None)
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------ write
    def write(self, manifest: Manifest, results: RunResults, options: Mapping[str, Any]) -> list[Path]:
        state = manifest.host_state
        if isinstance(state, create.FolderState):
            return create.write_package(manifest, results, options)
        try:
            return self._enrich(state, results)
        finally:
            if state.lock is not None:
                state.lock.release()

    def _enrich(self, state: PackageState, results: RunResults) -> list[Path]:
        package = state.package
        root = package.root
        obs_path = package.paths["observations"]
        when = format_datetime(classification_time(results.finished))
        new = build_rows(results.decisions, state.media, results.raw, results.classes.version,
                         results.settings.threshold, when, results.standin, results.animals, results.head)
        if "observationTags" not in state.observations.header:  # a review label's row could not be told ours
            reviewed = [row for row in new if row.get("classificationMethod") == "human"]
            if reviewed:
                say(f"warning: {obs_path.name} has no observationTags column: the {len(reviewed)} label(s) given in "
                    "deepfaune review are left out (the machine observations are written)")
                new = [row for row in new if row.get("classificationMethod") != "human"]
        new = _fields_held(new, state.observations.header,
                           [d for d in results.decisions if d.relpath in state.media])
        classified = {info.media_id for info in state.media.values()}
        change = enrich(package.descriptor_bytes, package.descriptor, state.observations, state.observations_bytes,
                        new, classified, state.deployment_ids, state.media_ids, str(obs_path.relative_to(root)))
        for warning in change.warnings:
            say(f"warning: {warning}")
        files = [(obs_path, change.observations), (package.descriptor_path, change.descriptor)]
        files = [(path, data) for path, data in files if data is not None]
        if not files:
            return []
        self._check_unchanged(state)
        backup(root, [package.descriptor_path, obs_path])
        swap_in(root / JOURNAL_NAME, files)
        return [path for path, _ in files]

    @staticmethod
    def _check_unchanged(state: PackageState) -> None:
        """The files read at the start are still the same: never overwrite someone's concurrent edit."""
        package = state.package
        obs_path = package.paths["observations"]
        now_obs = obs_path.read_bytes() if obs_path.is_file() else None
        if now_obs != state.observations_bytes or package.descriptor_path.read_bytes() != package.descriptor_bytes:
            raise PackageError(f"{package.root}: datapackage.json or {obs_path.name} changed while DeepFaune was "
                               "running; nothing was written (run again)")


def open_package(root: Path, options: Mapping[str, Any]) -> FolderLock:
    """Take the package's lock, then finish (or undo) what a killed enrichment left, before anything is read."""
    raw = options.get("lock_wait")
    try:
        wait = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        raise PackageError(f"--lock-wait: expected a number of seconds, got {raw!r}") from None
    if not wait >= 0 or wait == float("inf"):
        raise PackageError(f"--lock-wait: expected a finite number of seconds >= 0, got {raw!r}")
    lock = FolderLock(root / LOCK_NAME, f"the package {root}", wait=wait)
    try:
        if lock.note:
            say(f"camtrapdp: {lock.note}")
        note = recover(root / JOURNAL_NAME)
        if note:
            say(f"camtrapdp: {root}: {note}")
        clear_partial_backups(root)
    except BaseException:
        lock.release()
        raise
    return lock


def _fields_held(rows: list[dict[str, str]], header: Sequence[str], decisions: Sequence[Decision]
                 ) -> list[dict[str, str]]:
    """The human rows without the people's fields the observations table has no column for, and the lines
    saying which were written (count, sex, lifeStage, behavior, individualID, observationComments) and which not."""
    held = {name: column for name, column in FIELD_COLUMNS.items() if column in header}
    if "count" in header:  # counts per species: one human observation per species, each with its count
        held["species_counts"] = "one observation per species"
    for line in fields_note("camtrapdp", fields_given(decisions), held,
                            {name: f"the observations table has no {column} column"
                             for name, column in {**FIELD_COLUMNS, "species_counts": "count"}.items()}):
        say(line)
    dropped = {column for name, column in FIELD_COLUMNS.items() if name not in held}
    return [{k: v for k, v in row.items() if k not in dropped} if row.get("classificationMethod") == "human" else row
            for row in rows]


@hookimpl
def register_hosts(register):
    register(CamtrapDPHost())
