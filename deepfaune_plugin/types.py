"""The data that crosses module boundaries: manifest → media → raw outputs → decisions.

Hosts produce `Manifest`s of `MediaItem`s, backends turn each item into a `RawResult`
(boxes, logits: nothing decided yet), and `decisions` turns raw results plus settings into
`Decision`s that hosts write back.  Nothing here knows a host format.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

#: DeepFaune's detection categories (class index of the detector + 1); 0 means "no box".
EMPTY, ANIMAL, PERSON, VEHICLE = 0, 1, 2, 3
CATEGORY_NAMES = {ANIMAL: "animal", PERSON: "person", VEHICLE: "vehicle"}

#: Where a RawResult's date comes from (`RawResult.date_source`).
EXIF_DATE = "exif"  # an image's EXIF DateTimeOriginal
HOST_DATE = "host"  # the date the host's records give (the file itself has none)
CONTAINER_DATE = "container"  # a video's own creation time
FILE_DATE = "file date"  # a video's file modification time (its container had no date)
#: Decision keys that are no class: every file failed; the score stayed under the threshold.
FAILED, UNDEFINED = "failed", "undefined"
#: A per-animal decision key (`--every-animal`): the box's crop is too small to classify (engine.crop.MIN_CROP_PX).
TOO_SMALL = "too small"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"})
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mov", ".m4v", ".mpeg", ".mpg", ".mkv", ".asf"})


@dataclass(frozen=True)
class KnownBox:
    """A box another detector already found (e.g. MegaDetector), as its output states it.

    Backends use these in detector mode "existing" instead of running a detector (`MediaItem.known_boxes`).
    A category other than ANIMAL, PERSON or VEHICLE raises ValueError.

    Attributes:
        x: Left edge, as a fraction of the image's width (0..1, top-left origin).
        y: Top edge, as a fraction of the image's height (0..1).
        w: Width, as a fraction of the image's width.
        h: Height, as a fraction of the image's height.
        conf: That detector's confidence, 0..1.
        category: `ANIMAL` (1), `PERSON` (2) or `VEHICLE` (3).
    """

    x: float
    y: float
    w: float
    h: float
    conf: float
    category: int

    def __post_init__(self) -> None:
        if self.category not in CATEGORY_NAMES:
            raise ValueError(f"known box category must be 1 animal, 2 person or 3 vehicle, got {self.category!r}")


@dataclass(frozen=True)
class MediaItem:
    """One media file a host knows about: what a backend reads and what a decision is about.

    Attributes:
        path: Where the file is read from (absolute, or relative to the working directory): normally
            `Manifest.root / relpath`, which `deepfaune sort` relies on to find it again.
        relpath: The file's identity everywhere downstream: POSIX separators, relative to `Manifest.root`,
            unique within the manifest. Results (`RawResult.relpath`, `Decision.relpath`), the result
            table's `filename` column and the review page all use it; it also sets DeepFaune's order
            (files are sorted by it within a group).
        group: What sequences are formed within: two files join a sequence only when they have the same
            group and their dates are at most `RunSettings.maxlag` seconds apart. DeepFaune's own rule is
            the folder (`str(PurePosixPath(relpath).parent)`); a host may use a camera or a deployment
            id instead. A video is always a sequence of its own, whatever its group.
        timestamp: The date the host's records give for the file, as a **naive** `datetime` in the
            camera's local wall-clock time (like an EXIF date: no time zone; convert an aware time with
            `.replace(tzinfo=None)` after moving it to the camera's offset). Used only when the file
            carries no date of its own: an image's EXIF date and a video's container date win over it,
            it wins over a video's file modification time (`date_for(item)` tells which a run will use).
            None: the host knows none.
        station: The camera station (site) the file was taken at, or None; the review page counts
            detections per station, and it keys `Manifest.trap_days` and `Manifest.station_coordinates`.
        camera: The camera (device) id, or None; informative only.
        host_key: Anything the host needs to find the file's record again when it writes (a database row
            id, a table row number): the core never looks at it, and the same object comes back in
            `Manifest.items` at write time. Keep it picklable (a Dask run sends items to its workers).
        known_boxes: Boxes another detector found in this file, for detector mode "existing": None = the
            host has none for this file; () = that detector ran and found nothing.
    """

    path: Path
    relpath: str
    group: str
    timestamp: datetime | None = None  # host-provided date, used when the file has no EXIF date
    station: str | None = None
    camera: str | None = None
    host_key: Any = None
    #: Boxes another detector found in this file: None = the host has none for it; () = that detector
    #: ran and found nothing.  Used in detector mode "existing" instead of running a detector.
    known_boxes: tuple[KnownBox, ...] | None = None

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Problem:
    """Something wrong with one entry of a source, reported without stopping the run.

    Hosts put these in `Manifest.problems` (a lazily listed source may add more while it is listed). Each
    is said as `warning: RELPATH: REASON` and written to the run record; a run with any `skipped` file ends
    with exit status 3 (finished, but not every file has a result) instead of 0.

    Attributes:
        relpath: The entry, as the user's source names it (it may not be a valid relpath: it is shown,
            never opened).
        reason: One line saying what is wrong and, where it helps, which file and line of the source.
        skipped: How many media files it leaves without a result (what the run's summary and exit status
            count): 1 for a file left out, more for one message about many, 0 for a note about a file that
            is still classified (an odd name, a date taken from elsewhere): notes keep exit status 0.
    """

    relpath: str
    reason: str
    skipped: int = 1


@dataclass
class Manifest:
    """What a host adapter read from a source: the media to process and what it could not use.

    The run gives the same object back to `Host.write` / `Host.open_writer` (and `Host.release`), so a
    host can keep there what it needs to write.

    Attributes:
        root: The folder every `MediaItem.relpath` is relative to (`root / relpath` is the file). It is
            normally the source folder; when the media live outside the source (a record table listing
            files elsewhere) it is their common folder, not the table's. `deepfaune sort` finds the files
            under it (the run record names it as "source"), and without an output file the review page
            and the run record go in it.
        items: The media, in any order (the run sorts them into DeepFaune's order). Empty when the source
            is listed lazily (`from_blocks`).
        problems: Entries the host could not use, or notes about entries (`Problem`).
        host: The host's name (`Host.name`), for messages and the run record.
        host_state: The host's own notes for its write: anything (an open database, the parsed source,
            a lock). The core never reads it.
        detector_mode: A detector mode the source requires over the user's (e.g. "existing" when the
            source holds its own boxes), or None; the run says when it switches.
        stream: Set by `from_blocks`: the media listed lazily, as lists of items that form sequences only
            among themselves (a folder's images, one video), in DeepFaune's order.
        count: How many media files a lazily listed source has, if known (the progress bar's total).
        trap_days: Days each station was deployed (station -> days), where the host knows them: the
            review page's detection rate per 100 trap-days. Empty: unknown.
        human_labels: The labels the source already holds (relpath -> the label as the host holds it: a
            class key such as "red deer", "empty", "human", "vehicle", or a host's own text): what
            `deepfaune evaluate` and the review page's evaluation compare DeepFaune's decisions with.
        station_coordinates: Where each station is (station -> (latitude, longitude), WGS84 decimal
            degrees), where the host knows it: the review page's map. Empty: unknown.
    """

    root: Path
    items: list[MediaItem]
    problems: list[Problem] = field(default_factory=list)
    host: str = ""
    host_state: Any = None  # opaque to the core; the host adapter's own notes for write()
    detector_mode: str | None = None  # a mode the source requires (e.g. "existing"); the run switches to it
    #: Set by `from_blocks` for sources too large to hold: the media listed lazily, as lists of items that
    #: form sequences only among themselves (a folder's images, one video), in DeepFaune's order.  `items`
    #: stays empty then (unless a run keeps them); `count` says how many there are, if known.
    stream: Iterator[list[MediaItem]] | None = None
    count: int | None = None
    #: Days each station was deployed (station -> days, from the host's deployment dates), where the host
    #: knows them: the review page's detection rate per 100 trap-days.  Empty: unknown.
    trap_days: dict[str, float] = field(default_factory=dict)
    #: The human labels the source already holds (relpath -> the label as the host holds it: a DeepFaune key
    #: such as "red deer", "empty", "human", "vehicle", or a host's own text): what `deepfaune evaluate` and the
    #: review page's evaluation compare DeepFaune's decisions with, read by `taxonomy.LabelReader`; a tuple
    #: for a file several rows or observations label differently (they count if they name one class).  Only
    #: people's labels: a value this plugin wrote (its ledger, species-tree manifest, machine rows) is none.
    #: Empty: the source holds none.
    human_labels: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    #: Where each station is (station -> (latitude, longitude), WGS84 decimal degrees, from the host's
    #: deployments), where the host knows it: the review page's map of the deployments.  Empty: unknown.
    station_coordinates: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_items(cls, root: Path, items: list[MediaItem], **fields: Any) -> "Manifest":
        """A source listed at once (the usual case)."""
        return cls(root=root, items=items, **fields)

    @classmethod
    def from_blocks(cls, root: Path, blocks: Iterator[list[MediaItem]], count: int | None = None,
                    **fields: Any) -> "Manifest":
        """A source listed lazily, block by block (`stream`)."""
        return cls(root=root, items=[], stream=iter(blocks), count=count, **fields)

    @property
    def size(self) -> int | None:
        """How many media files, where known (the progress bar's total)."""
        return self.count if self.stream is not None else len(self.items)

    def blocks(self, keep: bool = False) -> Iterator[list[MediaItem]]:
        """The media as blocks of whole sequences in DeepFaune's order, however the host listed them: what a
        run goes through.  `keep`: a lazily listed source's items are kept in `items` as they go by."""
        if self.stream is None:
            from .sequences import sequence_blocks  # lazily: it loads the EXIF reader, which the data types need not

            yield from sequence_blocks(self.items)
            return
        for block in self.stream:
            if keep:
                self.items.extend(block)
            yield block


@dataclass(frozen=True)
class Detection:
    """A detector box after non-maximum suppression.

    Attributes:
        box: (x1, y1, x2, y2): the top-left and bottom-right corners in **pixels of the original image**
            (the decoded file, `RawResult.width` x `RawResult.height`), not of the detector's input.
        conf: The detector's confidence, 0..1.
        category: `ANIMAL` (1), `PERSON` (2) or `VEHICLE` (3).
        source: Which detector found it: "DF" (DeepFaune's), "MDS" (MegaDetector), "existing" (a
            `KnownBox`)...; written to the result table's `detector` column.
    """

    box: tuple[float, float, float, float]
    conf: float
    category: int  # ANIMAL, PERSON or VEHICLE
    source: str = "DF"  # which detector found it (DF, MDS, ...)


@dataclass(frozen=True)
class AnimalLogits:
    """The classifier's outputs for one animal box (`deepfaune run --every-animal`), each box cropped exactly as
    DeepFaune crops its best one.  `index` points into `RawResult.detections`; `logits` is None for a box whose crop
    is too small to classify (engine.crop.too_small): it is named `TOO_SMALL`, never guessed.

    Attributes:
        index: Index of the box in `RawResult.detections`.
        logits: The classifier's raw outputs for the box's crop (float32 [N], the class table's order), or
            None for a box too small to classify.
        bird_logits: The bird head's raw outputs for the crop (float32 [8]) when the model has one, else None.
    """

    index: int
    logits: np.ndarray | None
    bird_logits: np.ndarray | None = None


@dataclass
class RawResult:
    """Everything a backend computed for one file; a pure input to decisions (nothing is decided yet).

    A file the backend cannot read is not an error: return `RawResult(relpath, failure="why")` and the
    run goes on (the file gets the label key "failed" and the run exit status 3).

    A video has one result per sampled frame in `frames` (DeepFaune's order, repeats kept, each
    with its `frame_number`); decisions pool those frames like a sequence.  Its own
    detections/selected/logits/frame_number are those of its key frame (the frame DeepFaune
    shows and takes the box from; none when every frame is empty), and count/humancount are
    the maxima over its frames.

    Attributes:
        relpath: The `MediaItem.relpath` this result is for.
        width: Width of the decoded image in pixels (the size `Detection.box` is measured in); 0 if none.
        height: Height of the decoded image in pixels; 0 if none.
        detections: Every box the detector kept, any category (`Detection`); empty: nothing found.
        selected: Index into `detections` of the box that was classified (DeepFaune: the most confident
            one), or None when there is none. Its category decides empty/human/vehicle/animal.
        logits: The classifier's **raw** outputs for the selected box (before temperature and softmax):
            float32, shape [N], in the class table's order (`ClassTable.names`); only when that box is
            an animal, else None.
        bird_logits: The bird head's raw outputs (float32 [8], `ClassTable.bird_names` order) for an
            animal box, when the model has one; else None.
        date: When the file was taken: set by the run (EXIF, a video's container date, the host's date,
            a video's file time: see `date_source`); a backend may leave it None.
        date_source: Where `date` comes from: `EXIF_DATE`, `HOST_DATE`, `CONTAINER_DATE`, `FILE_DATE`,
            or "" (no date).
        failure: Why the file has no result (one line), or None. With a failure the other fields stay
            empty.
        warnings: What decoding noticed but got past (a truncated JPEG): the result table's `warning`
            column; the file still has a result.
        frame_number: The video frame this result is for (a video's own result: its key frame's).
        frames: A video's sampled frames, each a `RawResult`; empty for an image.
        frame_rate: A video's frames per second, as its container states it; None for an image.
        animals: With `RunSettings.every_animal` only: one `AnimalLogits` per animal box, in `detections`
            order (the selected box's are `logits` again, computed once); None: not computed (a default run,
            a video); []: computed, no animal box.
        features: What the classifier's heads read for the selected box (DeepFaune: the class token after the
            final norm, float32 [1024]), when the model gives them (its `features` output) and `logits` is set;
            else None (a video: in its `frames`).  The run hands them to the result store (float16,
            `store.read_features`, to fit new heads on people's labels) and then forgets them; never part of a
            decision, and None in results read back from the store.
    """

    relpath: str
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)
    selected: int | None = None  # index into detections of the box DeepFaune keeps
    logits: np.ndarray | None = None
    bird_logits: np.ndarray | None = None
    date: datetime | None = None  # EXIF DateTimeOriginal (or the host's date when EXIF has none)
    date_source: str = ""  # EXIF_DATE, HOST_DATE, CONTAINER_DATE or FILE_DATE; "" (none)
    failure: str | None = None
    warnings: list[str] = field(default_factory=list)
    frame_number: int | None = None  # the video frame this result is for (a video's own result: its key frame)
    frames: list["RawResult"] = field(default_factory=list)  # a video's sampled frames; empty for an image
    frame_rate: float | None = None  # a video's frames per second, as its container states it
    #: `--every-animal`: one entry per animal box, in `detections` order (the selected box's are `logits` again,
    #: computed once).  None: not computed (a default run, a video); [] : computed, no animal box.
    animals: list[AnimalLogits] | None = None
    features: np.ndarray | None = None  # the classifier's features for the selected box (issue 34)

    @property
    def selected_detection(self) -> Detection | None:
        return None if self.selected is None else self.detections[self.selected]

    @property
    def category(self) -> int:
        det = self.selected_detection
        return EMPTY if det is None else det.category

    @property
    def count(self) -> int:
        if self.frames:
            return max(f.count for f in self.frames)
        return sum(1 for d in self.detections if d.category == ANIMAL)

    @property
    def humancount(self) -> int:
        if self.frames:
            return max(f.humancount for f in self.frames)
        return sum(1 for d in self.detections if d.category == PERSON)


#: What a person may record besides a label (`HumanFields`), in the order tables and messages give them.
HUMAN_FIELDS = ("count", "sex", "life_stage", "behaviour", "individual", "comment", "species_counts")


@dataclass(frozen=True)
class HumanFields:
    """What ecologists record about a file besides its label (`deepfaune review`, `--import`): how many animals,
    their sex and life stage (Camtrap DP's vocabulary), what they do, which known individual, a comment. Empty
    text / None: not recorded (a host writes nothing for it).

    Attributes:
        count: How many animals (of the label's class) the file shows, 1 or more; it replaces DeepFaune's count.
        sex: "female" or "male".
        life_stage: "adult", "subadult" or "juvenile".
        behaviour: What they do, free text ("grazing").
        individual: Which known individual, free text ("RD-7").
        comment: Free text.
        species_counts: How many animals of each species a picture showing several holds (`--every-animal`),
            as label keys with their counts, "fox:2;badger:1" (each key once, in the order given); a host writes
            one observation (record) per species from it.
    """

    count: int | None = None
    sex: str = ""
    life_stage: str = ""
    behaviour: str = ""
    individual: str = ""
    comment: str = ""
    species_counts: str = ""

    def species(self) -> dict[str, int]:
        """`species_counts` as {label key: how many}, in the order given; {} when not recorded."""
        out: dict[str, int] = {}
        for part in self.species_counts.split(";"):
            key, _, n = part.rpartition(":")
            if key and n.isdigit():
                out[key] = int(n)
        return out

    def given(self) -> tuple[str, ...]:
        """The names (HUMAN_FIELDS) of the fields recorded."""
        return tuple(name for name in HUMAN_FIELDS if self.text(name))

    def text(self, name: str) -> str:
        """A field's value as a table cell holds it ("" when not recorded)."""
        value = getattr(self, name)
        return "" if value is None else str(value)


@dataclass(frozen=True)
class HumanLabel:
    """What a person decided for one file in `deepfaune review`.

    Attributes:
        key: A label key: a class's English label, or "empty", "human", "vehicle".
        reviewer: Who decided (the reviewer name given to `deepfaune review`).
        at: When.
        fields: What else they recorded (count, sex, life stage, behaviour, individual, comment).
        others: The labels other reviewers gave the same file that say something else (a conflict): kept side by
            side in the store; this one, the latest, decides the outputs.
    """

    key: str
    reviewer: str
    at: datetime
    fields: HumanFields = HumanFields()
    others: tuple["HumanLabel", ...] = ()


#: `Detection.source` of a box a person drew in `deepfaune review` (the result table's `detector` column).
HUMAN_BOX_SOURCE = "human"


@dataclass(frozen=True)
class HumanBoxes:
    """The boxes a person drew for one file in `deepfaune review` (a missed animal, a person to blur), which
    replace the detector's for that file in every output; none: they removed every box (a false one).

    Attributes:
        boxes: (category, (x, y, w, h)) each: `ANIMAL`, `PERSON` or `VEHICLE`, and the box's top-left corner and
            size as fractions 0..1 of the image (a video: of its key frame), so they hold for any decoded size.
        reviewer: Who drew them.
        at: When.
    """

    boxes: tuple[tuple[int, tuple[float, float, float, float]], ...]
    reviewer: str
    at: datetime


#: What a person decided about a place set aside as a repeat (`deepfaune run --drop-repeats`, issue 32).
REPEAT_CONFIRM, REPEAT_RESTORE = "confirm", "restore"


@dataclass(frozen=True)
class RepeatDecision:
    """A person's word on one place set aside as a repeat, in `deepfaune review`: `confirm` (a branch, a rock:
    it stays aside) or `restore` (an animal after all: its boxes count again when the season is decided).

    Attributes:
        station: The station as `repeats.station_name` names it.
        box: The place, (x1, y1, x2, y2) as fractions of the image; a season decided again matches it to its
            place by the run's own overlap rule (`RunSettings.repeat_iou`).
        decision: `REPEAT_CONFIRM` or `REPEAT_RESTORE`.
        reviewer: Who decided.
        at: When.
    """

    station: str
    box: tuple[float, float, float, float]
    decision: str
    reviewer: str
    at: datetime


@dataclass(frozen=True)
class ClassTable:
    """The labels and decision constants of a classifier, as a model card states them.

    A backend returns one (`Predictor.classes`, `BackendDescription.classes`); decisions are DeepFaune's
    rules on it: softmax of logits / temperature, the threshold, sequences pooled.

    Attributes:
        version: The classifier's version, e.g. "1.4" (the run record's `class_table`).
        names: Language code -> the N animal labels, in the order of the model's outputs (`RawResult.logits`).
            Every language has the same N labels. The English labels ("en", else the first language) are
            the language-free **keys** (`Decision.prediction_key`): DeepFaune 1.4 says "fox", "red deer",
            "wild boar", "micromammal" (not "red fox"); a model card (`models/deepfaune-1.4.yaml`, `labels: en`)
            lists them.
        bird_names: Language code -> the 8 bird-group labels in the bird head's order, or None (no bird head).
        non_animal: "human", "vehicle", "empty", "undefined" -> language code -> label: what a file without
            an animal (or under the threshold) is called in each language.
        temperature_single: Softmax temperature for a sequence of one image.
        temperature_multi: Softmax temperature for a sequence of several images.
        temperature_bird: Softmax temperature of the bird head.
        bird_class: The English key of the class the bird head refines ("bird").
    """

    version: str
    names: Mapping[str, Sequence[str]]  # language -> N animal labels in model output order
    bird_names: Mapping[str, Sequence[str]] | None  # language -> 8 bird labels, or None
    non_animal: Mapping[str, Mapping[str, str]]  # human/vehicle/empty/undefined -> language -> label
    temperature_single: float = 1.0
    temperature_multi: float = 1.0
    temperature_bird: float = 1.0
    bird_class: str = "bird"  # English key of the class the bird head refines

    @property
    def languages(self) -> list[str]:
        return list(self.names)

    @property
    def num_classes(self) -> int:
        return len(next(iter(self.names.values())))

    def labels(self, lang: str) -> list[str]:
        if lang not in self.names:
            raise ValueError(
                f"language {lang!r} not available for model {self.version}; "
                f"choose one of {', '.join(self.names)}"
            )
        return list(self.names[lang])

    def non_animal_label(self, kind: str, lang: str) -> str:
        return self.non_animal[kind][lang]


@dataclass
class Decision:
    """DeepFaune's answer for one file: per-image and per-sequence labels, in one language.

    What a host writes back (`RunResults.decisions`). Labels are in `RunSettings.lang`; the `*_key` fields
    are the same answers, language-free: a class key (its English label: "fox", "red deer"; "bird
    corvid" with the bird option), or "empty", "human", "vehicle", "undefined" (the score stayed under
    the threshold), "failed" (the file has no result). Scores are probabilities, 0..1.

    Attributes:
        relpath: The `MediaItem.relpath` this is about.
        date: When the file was taken (`RawResult.date`: naive, the camera's clock), or None.
        seqnum: The sequence number, from 1 across the whole run, in DeepFaune's order.
        predictionbase: The per-image label (this file alone), in the run's language.
        scorebase: Its score, truncated to 2 decimals as DeepFaune writes it.
        prediction: The per-sequence label (every file of the sequence has the same): what DeepFaune
            reports and what a host normally writes.
        score: Its score, truncated to 2 decimals.
        top1: The best class of the sequence even when its score is under the threshold.
        count: Animal boxes in this file (a video: the most in one frame).
        humancount: Person boxes in this file (a video: the most in one frame).
        category: Category of the per-sequence decision: 0 empty, `ANIMAL`, `PERSON`, `VEHICLE`.
        prediction_key: The language-free key of `prediction` (see above).
        top1_key: The language-free key of `top1`.
        box: The classified box, (x1, y1, x2, y2) in **pixels** of the image (as `Detection.box`; divide by
            `results.raw[relpath].width`/`height` for fractions), or None.
        box_conf: The detector's confidence for that box, or None.
        failure: Why the file has no result (then the labels are "" and the keys "failed"), or None.
        raw_score: The per-sequence probability before truncation (formats that keep more digits).
        raw_scorebase: The per-image probability before truncation.
        categorybase: The per-image answer's category (`ANIMAL` also when undefined).
        top1base_key: The per-image best class's key.
        predictionbase_key: The language-free key of `predictionbase`.
        human: A person's label for this file (`deepfaune review`), or None; the label fields above then
            hold it, with scores 1.0.
        machine: DeepFaune's own decision when `human` replaced it (formats that write both), else None.
    """

    relpath: str
    date: datetime | None
    seqnum: int
    predictionbase: str
    scorebase: float
    prediction: str
    score: float
    top1: str
    count: int
    humancount: int
    category: int  # category of the per-sequence decision: EMPTY, ANIMAL, PERSON, VEHICLE
    prediction_key: str  # language-independent key of `prediction` (English label, "undefined", ...)
    top1_key: str
    box: tuple[float, float, float, float] | None = None
    box_conf: float | None = None
    failure: str | None = None
    #: The float32 probabilities before truncation to 2 decimals (formats that keep more digits), and the
    #: per-image answer's category and best class (`categorybase`: ANIMAL also when undefined).
    raw_score: float = 0.0
    raw_scorebase: float = 0.0
    categorybase: int = EMPTY
    top1base_key: str = ""
    predictionbase_key: str = ""  # language-independent key of `predictionbase` (the per-image answer)
    #: A person's label for this file (`deepfaune review`), which the label fields above then hold (scores 1.0);
    #: `machine` keeps DeepFaune's own decision for the formats that write both (Camtrap DP's machine rows).
    human: "HumanLabel | None" = None
    machine: "Decision | None" = None


@dataclass(frozen=True)
class AnimalDecision:
    """DeepFaune's rules applied to one animal box alone (`--every-animal`): what the per-animal writers need.

    `box` is in original pixels (x1, y1, x2, y2), `normalised` the same as (x, y, w, h) fractions, top-left origin;
    `key`/`label`/`score`/`top1` as for one image whose only row is this box (temperature for one row, threshold,
    `--exclude`, the bird head); `key` is `TOO_SMALL` (score 0, no top1) for a box too small to classify.
    `maxn` and `images`: for this box's key in its sequence, the most boxes of it in one image (MaxN) and how
    many images hold at least one.

    Attributes:
        relpath: The file (`MediaItem.relpath`).
        seqnum: The file's sequence number (`Decision.seqnum`).
        index: Index of the box in the file's `RawResult.detections`.
        box: The box in the original image's pixels: x1, y1, x2, y2.
        normalised: The same box as x, y, width, height fractions of the image, top-left origin.
        conf: The detector's confidence for the box, 0..1.
        source: The detector that found it ("DF", "MDS", or the host's for known boxes).
        key: The box's decision key (language-free, as `Decision.prediction_key`); `TOO_SMALL` for a box too
            small to classify, "undefined" under the threshold.
        label: `key` in the run's language.
        score: The box's score, truncated to 2 decimals as DeepFaune reports it (0 when too small).
        raw_score: The score before truncation.
        top1_key: The best class's key, whatever the threshold ("" when too small).
        top1: `top1_key` in the run's language.
        selected: True for the box DeepFaune itself classified for the image.
        maxn: For `key` in this sequence, the most boxes of it in one image (MaxN).
        images: For `key` in this sequence, how many images hold at least one.
    """

    relpath: str
    seqnum: int
    index: int  # into the file's RawResult.detections
    box: tuple[float, float, float, float]
    normalised: tuple[float, float, float, float]
    conf: float
    source: str
    key: str
    label: str
    score: float  # truncated to 2 decimals, as DeepFaune reports it
    raw_score: float
    top1_key: str
    top1: str
    selected: bool  # the box DeepFaune itself classified for the image
    maxn: int = 0
    images: int = 0
