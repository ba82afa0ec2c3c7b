"""DeepFaune decisions as Camtrap DP observations, and the package metadata they need.

One media-level observation per classified media (DeepFaune's per-file answer, which is the
answer of its sequence, as in DeepFaune's own table) and one event-level observation per
DeepFaune sequence, sharing an `eventID` with its media rows.  Identifiers are derived from
the mediaIDs, so a re-run finds (and replaces) this plugin's earlier rows.

Those rows always hold DeepFaune's own answer (classificationMethod "machine"), also for a file a person
labelled in `deepfaune review` (`Decision.machine`); such a file gets one more media-level row of its own, the
person's (classificationMethod "human", classifiedBy the reviewer, classificationTimestamp when they labelled
it, no probability), tagged `deepfaune:review` in observationTags so that a re-export replaces it (and drops
it once the label is withdrawn). Every other row, a person's included, is never touched.

With `--every-animal` (`RunResults.animals`) an image with animal boxes gets one media-level row per box instead
of its one row (`<mediaID>-box<n>`, n the box's rank in the detector's list: its bbox, the box's own answer by
DeepFaune's rules for that box alone, count 1), and a sequence with animal boxes one event-level row per species
instead of its one (`-<species>` after the event's observationID, count = MaxN, the most boxes of it in one
image; the best probability of its boxes). A file's or sequence's own row stays beside them only when its answer
is a person or a vehicle (no animal answer to replace). These rows are ours by the same rules as the others
(machine, classifiedBy DeepFaune), so a re-run, with or without the option, replaces exactly them.
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from deepfaune_plugin.api import (__version__, ANIMAL, FAILED, HUMAN_BOX_SOURCE, PERSON, STANDIN_MARK, TOO_SMALL,
                                  UNDEFINED, VEHICLE, AnimalDecision, Decision, RawResult, Taxon, animals_by_file,
                                  normalised_box, species_in_file, taxa, taxon_for_key)

from deepfaune_plugin.hooks.camtrapdp.schema import format_datetime, parse_datetime

CLASSIFIED_BY = "DeepFaune {model} (deepfaune-plugin {plugin}{standin})"
#: Ours, of any version, a stand-in run's included (its classifiedBy names STANDIN_MARK after a "; ").
_OURS = re.compile(r"^DeepFaune \S+ \(deepfaune-plugin \S+(?:; [^()]*)?\)$")
#: The descriptor property saying that some observations come from stand-in models (set while any row of a
#: stand-in run is in the package, removed with the last one).
STANDIN_PROPERTY = "deepfauneStandInModels"
STANDIN_DESCRIPTION = (f"observations whose classifiedBy ends with '; {STANDIN_MARK}' come from DeepFaune's stand-in "
                       "models (random weights, for testing integrations): do not use them as data")
ID_PREFIX = "deepfaune-"
#: The observationTags tag of the rows holding a label given in `deepfaune review` (our human rows).
REVIEW_TAG = "deepfaune:review"
REVIEW_ID_PREFIX = f"{ID_PREFIX}review-"
#: Where Camtrap DP holds what a person recorded besides the label (HumanFields), in the human row.
FIELD_COLUMNS = {"count": "count", "sex": "sex", "life_stage": "lifeStage", "behaviour": "behavior",
                 "individual": "individualID", "comment": "observationComments"}
VERNACULAR_ORDER = ("eng", "fra", "deu", "ita", "spa", "por", "nor", "swe")
_BOX_CATEGORY = {"animal": ANIMAL, "unknown": ANIMAL, "human": PERSON, "vehicle": VEHICLE}
_NON_ANIMAL_TYPES = {"empty": "blank", "human": "human", "vehicle": "vehicle", UNDEFINED: "unknown",
                     FAILED: "unclassified"}


def classified_by(model_version: str, standin: bool = False, head: str | None = None) -> str:
    """Our classifiedBy; `head`: the adapted head that decided (`run --adapted`), named before the stand-in mark."""
    marks = (f"; adapted head {head}" if head else "") + (f"; {STANDIN_MARK}" if standin else "")
    return CLASSIFIED_BY.format(model=model_version, plugin=__version__, standin=marks)


def is_standin(row: Mapping[str, str]) -> bool:
    """A machine row of ours written by a run on stand-in models (random labels)."""
    return row.get("classificationMethod") == "machine" and is_ours(row) \
        and row.get("classifiedBy", "").endswith(f"; {STANDIN_MARK})")


def classified_by_deepfaune(text: str) -> bool:
    """`text` (a classifiedBy) names DeepFaune as this plugin writes it, any version."""
    return bool(_OURS.match(text.strip()))


def is_ours(row: Mapping[str, str]) -> bool:
    """A row written by this plugin (any version), the only rows a re-run replaces: a machine observation
    classified by DeepFaune, or a human one carrying a `deepfaune review` label (tagged REVIEW_TAG)."""
    method = row.get("classificationMethod")
    if method == "machine":
        return bool(_OURS.match(row.get("classifiedBy", "")))
    return method == "human" and REVIEW_TAG in (t.strip() for t in (row.get("observationTags") or "").split("|"))


def observation_type(key: str) -> str:
    return _NON_ANIMAL_TYPES.get(key, "animal")


def event_id(media_ids: Iterable[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(media_ids)).encode("utf-8")).hexdigest()[:16]
    return f"{ID_PREFIX}{digest}"


def _number(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _bbox(box: tuple[float, float, float, float], width: int, height: int) -> dict[str, str]:
    """Pixels (x1, y1, x2, y2) → Camtrap DP's top-left x, y, width, height in [0, 1]; none for a box outside."""
    if width <= 0 or height <= 0:
        return {}
    x, y, w, h = normalised_box(box, width, height, decimals=6, clamp="box")
    if w <= 0 or h <= 0:
        return {}
    return {"bboxX": _number(x), "bboxY": _number(y), "bboxWidth": _number(w), "bboxHeight": _number(h)}


@dataclass(frozen=True)
class MediaInfo:
    """What the package says about a classified media."""

    media_id: str
    deployment_id: str
    timestamp: str  # media.csv text, reused verbatim as eventStart/eventEnd


def _describe(d: Decision, count: int, humancount: int, threshold: float) -> dict[str, str]:
    key = d.prediction_key
    obs_type = observation_type(key)
    n = count if obs_type == "animal" else humancount if obs_type == "human" else 0
    return _answer(key, d.top1_key, d.score, n, threshold)


def _answer(key: str, top1_key: str, score: float, count: int, threshold: float) -> dict[str, str]:
    """The columns saying what DeepFaune answered (a file's, a sequence's or one animal box's)."""
    row = {"observationType": observation_type(key)}
    t = taxon_for_key(key)
    if t is not None:
        row["scientificName"] = t.scientific_name
    if count >= 1:
        row["count"] = str(count)
    if key == UNDEFINED:
        row["observationComments"] = (f"DeepFaune: undefined; best guess {top1_key} with score "
                                      f"{_number(score)} < threshold {_number(threshold)}")
    if key == TOO_SMALL:
        row["observationComments"] = "DeepFaune: an animal box too small to classify"
    elif key != FAILED:
        row["classificationProbability"] = _number(score)
    return row


#: Observation types of a file's (or sequence's) own answer that stay beside its per-box rows: no animal answer.
_BESIDE_BOXES = ("human", "vehicle")


#: What a per-box or per-species row takes from its file's or sequence's own row: where and who, not what.
_SHARED = ("deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel", "classificationMethod",
           "classifiedBy", "classificationTimestamp")


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_") or "x"


def box_rows(media_row: Mapping[str, str], boxes: Sequence[AnimalDecision], raw: RawResult | None,
             threshold: float) -> list[dict[str, str]]:
    """One media-level row per animal box of a file (`--every-animal`): `media_row`'s identity and provenance,
    the box's bbox and its own answer, count 1."""
    rows = []
    for a in boxes:
        row = {"observationID": f"{media_row['observationID']}-box{a.index + 1}",
               **{k: media_row[k] for k in _SHARED}, **_answer(a.key, a.top1_key, a.score, 1, threshold)}
        if raw is not None:
            row.update(_bbox(a.box, raw.width, raw.height))
        rows.append(row)
    return rows


def species_events(event_row: Mapping[str, str], boxes: Sequence[AnimalDecision],
                   threshold: float) -> list[dict[str, str]]:
    """One event-level row per species of a sequence's animal boxes (`--every-animal`): count = its MaxN, the
    best-scored box's answer."""
    rows = []
    for key, group in species_in_file(boxes).items():
        best = max(group, key=lambda a: a.raw_score)
        rows.append({"observationID": f"{event_row['observationID']}-{_slug(key)}",
                     **{k: event_row[k] for k in _SHARED}, **_answer(key, best.top1_key, best.score, best.maxn,
                                                                   threshold)})
    return rows


def build_rows(decisions: Sequence[Decision], media: Mapping[str, MediaInfo], raws: Mapping[str, RawResult],
               model_version: str, threshold: float, when: str, standin: bool = False,
               animals: Sequence[AnimalDecision] | None = None, head: str | None = None) -> list[dict[str, str]]:
    """Event row then media rows for each DeepFaune sequence, in sequence order.

    `media`: relpath -> MediaInfo; `raws`: relpath -> the backend's output (image size, box
    category); `when`: the classificationTimestamp text.  A media row gets its file's box only
    when that box is of the observation's kind (no person box on an animal observation), and
    never for a video: its box is one frame's, and Camtrap DP has no field saying which.  `standin`
    (RunResults.standin): every machine row says so in classifiedBy and observationComments.  `animals`
    (RunResults.animals, `--every-animal`): per-box media rows and per-species event rows (module docstring);
    `head` (RunResults.head): the adapted head that decided, named in classifiedBy.
    """
    boxes = animals_by_file(animals)
    common = {"classificationMethod": "machine", "classifiedBy": classified_by(model_version, standin, head),
              "classificationTimestamp": when}
    sequences: dict[int, list[Decision]] = {}
    reviewed: dict[str, Decision] = {}  # relpath -> the decision holding a person's label
    for d in decisions:
        if d.relpath in media:
            if d.human is not None:
                reviewed[d.relpath] = d
            sequences.setdefault(d.seqnum, []).append(d.machine or d)  # machine rows: DeepFaune's own answer
    rows: list[dict[str, str]] = []
    for members in sequences.values():
        infos = [media[d.relpath] for d in members]
        eid = event_id(i.media_id for i in infos)
        ok = [d for d in members if d.failure is None]
        lead = ok[0] if ok else members[0]
        stamps = sorted(infos, key=lambda i: parse_datetime(i.timestamp))
        event = {"observationID": f"{ID_PREFIX}event-{eid[len(ID_PREFIX):]}", "deploymentID": infos[0].deployment_id,
                 "mediaID": "", "eventID": eid, "eventStart": stamps[0].timestamp, "eventEnd": stamps[-1].timestamp,
                 "observationLevel": "event", **common}
        event.update(_describe(lead, max((d.count for d in ok), default=0),
                               max((d.humancount for d in ok), default=0), threshold))
        if not ok:
            event["observationComments"] = "DeepFaune could not process any file of this event"
        seq_boxes = [a for d in members for a in boxes.get(d.relpath, ())]
        if not seq_boxes or event["observationType"] in _BESIDE_BOXES:
            rows.append(event)
        rows.extend(species_events(event, seq_boxes, threshold))
        for d, info in zip(members, infos):
            row = {"observationID": f"{ID_PREFIX}{info.media_id}", "deploymentID": info.deployment_id,
                   "mediaID": info.media_id, "eventID": eid, "eventStart": info.timestamp, "eventEnd": info.timestamp,
                   "observationLevel": "media", **common}
            if d.failure is not None:
                row.update(observationType="unclassified",
                           observationComments=f"DeepFaune could not process this file: {d.failure}")
            else:
                row.update(_describe(d, d.count, d.humancount, threshold))
                raw = raws.get(d.relpath)
                if d.box is not None and raw is not None and not raw.frames \
                        and raw.category == _BOX_CATEGORY.get(row["observationType"]):
                    row.update(_bbox(d.box, raw.width, raw.height))
            own = boxes.get(d.relpath, ())
            if not own or row["observationType"] in _BESIDE_BOXES:
                rows.append(row)
            rows.extend(box_rows(row, own, raws.get(d.relpath), threshold))
            if d.relpath in reviewed:
                rows.append(with_drawn_box(human_row(reviewed[d.relpath], info, eid), reviewed[d.relpath],
                                           raws.get(d.relpath)))
                rows.extend(species_rows(rows[-1], reviewed[d.relpath]))
    if standin:
        for row in rows:
            if row["classificationMethod"] == "machine":
                row["observationComments"] = "; ".join(filter(None, (f"DeepFaune {STANDIN_MARK}",
                                                                     row.get("observationComments"))))
    return rows


def human_row(d: Decision, info: MediaInfo, eid: str) -> dict[str, str]:
    """The media-level observation of the label a person gave `d`'s file in `deepfaune review`."""
    human = d.human
    at = human.at if human.at.tzinfo is not None else human.at.astimezone()  # stored as local time
    row = {"observationID": f"{REVIEW_ID_PREFIX}{info.media_id}", "deploymentID": info.deployment_id,
           "mediaID": info.media_id, "eventID": eid, "eventStart": info.timestamp, "eventEnd": info.timestamp,
           "observationLevel": "media", "observationType": observation_type(human.key),
           "classificationMethod": "human", "classifiedBy": human.reviewer,
           "classificationTimestamp": format_datetime(at.astimezone(timezone.utc).replace(microsecond=0)),
           "observationTags": REVIEW_TAG}
    t = taxon_for_key(human.key)
    if t is not None:
        row["scientificName"] = t.scientific_name
    for name in human.fields.given():
        if name in FIELD_COLUMNS:
            row[FIELD_COLUMNS[name]] = human.fields.text(name)
    counted = human.fields.species().get(human.key)
    if counted is not None:  # the label's own species counted among several: that count is its row's
        row["count"] = str(counted)
    return row


def species_rows(label_row: Mapping[str, str], d: Decision) -> list[dict[str, str]]:
    """One more human observation per other species a person counted in the file (HumanFields.species_counts),
    `-<species>` after the label's observationID, with its count; what else they recorded (sex...) and the
    drawn box stay the label's row's."""
    rows = []
    for key, n in d.human.fields.species().items():
        if key == d.human.key:
            continue
        row = {k: label_row[k] for k in ("deploymentID", "mediaID", "eventID", "eventStart", "eventEnd",
                                         "observationLevel", "classificationMethod", "classifiedBy",
                                         "classificationTimestamp", "observationTags")}
        row.update(observationID=f"{label_row['observationID']}-{_slug(key)}", observationType=observation_type(key),
                   count=str(n))
        t = taxon_for_key(key)
        if t is not None:
            row["scientificName"] = t.scientific_name
        rows.append(row)
    return rows


def with_drawn_box(row: dict[str, str], d: Decision, raw: RawResult | None) -> dict[str, str]:
    """A human row with the box the person drew for its label (`deepfaune review`), when there is one of the
    row's kind; never for a video (its box is one frame's)."""
    sel = raw.selected_detection if raw is not None else None
    if sel is not None and sel.source == HUMAN_BOX_SOURCE and d.box is not None and not raw.frames \
            and sel.category == _BOX_CATEGORY.get(row["observationType"]):
        row.update(_bbox(d.box, raw.width, raw.height))
    return row


def classification_time(finished: datetime | None) -> datetime:
    """When DeepFaune classified (the run's end), in UTC to the second."""
    return (finished or datetime.now()).astimezone(timezone.utc).replace(microsecond=0)


# ---------------------------------------------------------------- package metadata

def taxonomic_entry(t: Taxon) -> dict[str, Any]:
    entry: dict[str, Any] = {"scientificName": t.scientific_name, "taxonRank": t.rank, "kingdom": t.kingdom}
    for name, value in (("class", t.class_), ("order", t.order), ("family", t.family), ("genus", t.genus)):
        if value:
            entry[name] = value
    entry["vernacularNames"] = {lang: t.vernacular[lang] for lang in VERNACULAR_ORDER if lang in t.vernacular}
    return entry


def _our_entries() -> dict[str, dict[str, Any]]:
    """scientificName -> the entry this plugin writes (several keys may share a name, e.g. Aves)."""
    out: dict[str, dict[str, Any]] = {}
    preferred = {"Aves": "bird", "Mammalia": "micromammal"}  # the plain class labels name these taxa
    for key, t in taxa().items():
        if t.scientific_name in out and preferred.get(t.scientific_name) != key:
            continue
        out[t.scientific_name] = taxonomic_entry(t)
    return out


def update_descriptor(descriptor: Mapping[str, Any], all_names: set[str], our_names: set[str],
                      standin: bool = False) -> dict[str, Any]:
    """A copy of `descriptor` with project.observationLevel and taxonomic updated for our observations.

    `all_names`: every scientificName used in the new observations table; `our_names`: those of
    our rows.  Existing taxonomic entries are only completed (missing rank or vernacular names),
    never changed; an entry exactly as this plugin writes it is dropped when no row uses it.
    `standin`: some rows of the new table come from stand-in models: STANDIN_PROPERTY says so (and
    goes, when no such row is left, if it still holds our text).
    """
    new = copy.deepcopy(dict(descriptor))
    if standin:
        new[STANDIN_PROPERTY] = STANDIN_DESCRIPTION
    elif new.get(STANDIN_PROPERTY) == STANDIN_DESCRIPTION:
        del new[STANDIN_PROPERTY]
    project = new.setdefault("project", {})
    levels = list(project.get("observationLevel", []))
    for level in ("media", "event"):
        if level not in levels:
            levels.append(level)
    project["observationLevel"] = levels

    ours = _our_entries()
    kept = []
    present = set()
    for entry in new.get("taxonomic", []):
        name = entry.get("scientificName") if isinstance(entry, Mapping) else None
        if name in ours and name not in all_names and entry == ours[name]:
            continue  # written by an earlier run, no longer used
        if name in our_names:
            mine = ours[name]
            entry.setdefault("taxonRank", mine["taxonRank"])
            names = entry.setdefault("vernacularNames", {})
            for lang, label in mine["vernacularNames"].items():
                names.setdefault(lang, label)
        present.add(name)
        kept.append(entry)
    for name in sorted(our_names - present):
        kept.append(ours[name])
    new["taxonomic"] = kept
    return new
