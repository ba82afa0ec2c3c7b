"""The whole surface a plugin imports (docs/plugins.md): the contracts (defined in `contracts`), `hookimpl`, the
data types, and the helpers every host needs (safe paths, locking and all-or-nothing writes, media listing, the
taxonomy, DeepFaune's result table). This module only re-exports: each name is defined where its job is done.

Stability: within a 0.x minor version nothing listed in `__all__` changes meaning or goes away; a name is only
removed after one minor version in which it still works and warns. Everything outside this module and
`deepfaune_plugin.testing` is internal and may change in any release.
"""
from __future__ import annotations

from ._version import __version__
from .animal_table import AnimalTableWriter, animal_table, animals_path
from .animals import animals_by_file, species_in_file
from .atomic import StagedFile, atomic_output, staging_dir, write_bytes_atomic
from .boxes import normalised_box
# adopt_backend, adopt_host: importable here as before (the registry's wrappers), outside `__all__`
from .contracts import (DETECTOR_MODES, EXISTING_DETECTIONS, MAX_THREADS, MODEL_DETECTOR_MODES, OPTION_COMMANDS,
                        HEAD_COLUMN, STANDIN_COLUMN, STANDIN_MARK, STANDIN_VALUE, Backend, BackendDescription, Command, Host,
                        HostOption, Predictor, ResultWriter, RunResults, RunSettings, adopt_backend, adopt_host)
from .corrections import label_text
from .dates import date_for
from .engine.known_boxes import JSON_THRESHOLD
from .errors import BackendError, DeepfauneError, HostError, PluginError
from .exifdate import format_date
from .human_fields import fields_given, fields_note
from .hookspecs import hookimpl
from .models.cards import ModelCard, load_card
from .paths import (UnsafeFolderError, UnsafePathError, is_plain_name, not_regular, open_folder, own_folder,
                    safe_relative)
from .placing import place_file, safe_folder_name, unique_target
from .progress import Progress
from .runlog import say
from .sniff import media_format
from .table import TableWriter, escape_formula, result_table, write_table
from .taxonomy import LabelReader, Taxon, key_for_name, taxa, taxon_for_key
from .transaction import FolderLock, JournalError, LockedError, commit_files, file_sha256, recover
from .types import (ANIMAL, CATEGORY_NAMES, CONTAINER_DATE, EXIF_DATE, FAILED, FILE_DATE, HOST_DATE, IMAGE_SUFFIXES,
                    HUMAN_BOX_SOURCE, HUMAN_FIELDS, PERSON, UNDEFINED, VEHICLE, VIDEO_SUFFIXES, ClassTable, Decision, Detection,
                    HumanBoxes, HumanFields, HumanLabel, KnownBox, Manifest, MediaItem, Problem, RawResult, TOO_SMALL,
                    AnimalDecision, AnimalLogits)
from .untrusted import UntrustedInputError, decode_user_text, load_json, load_yaml, parse_json, read_user_text
from .walk import MEDIA_SUFFIXES, OWN_FOLDER_PREFIXES, count_media, iter_media, iter_media_blocks

__all__ = [
    # contracts
    "Backend", "BackendDescription", "Command", "Host", "HostOption", "Predictor", "ResultWriter", "RunResults",
    "RunSettings", "DETECTOR_MODES", "MODEL_DETECTOR_MODES", "EXISTING_DETECTIONS", "OPTION_COMMANDS", "MAX_THREADS",
    "hookimpl", "DeepfauneError", "HostError",
    "BackendError", "PluginError",
    # data
    "ANIMAL", "PERSON", "VEHICLE", "CATEGORY_NAMES", "ClassTable", "Decision", "Detection", "KnownBox", "Manifest",
    "MediaItem", "Problem", "RawResult", "UNDEFINED", "FAILED", "EXIF_DATE", "HOST_DATE", "CONTAINER_DATE", "FILE_DATE",
    # --every-animal: per-box classifier outputs (RawResult.animals), per-box decisions (RunResults.animals), the
    # key of a box too small to classify, and the folder host's one-row-per-animal table: animal_table(animals),
    # the rows as a table; AnimalTableWriter(path), that table as CSV written as a run goes and committed on close;
    # animals_path(output), where it goes beside a result table (NAME-animals.csv); animals_by_file(animals),
    # relpath -> that file's boxes (empty when the option is off); species_in_file(boxes), key -> that file's boxes
    # of it (one entry per species it shows; the count is the list's length)
    "AnimalLogits", "AnimalDecision", "TOO_SMALL", "animal_table", "AnimalTableWriter", "animals_path",
    "animals_by_file", "species_in_file",
    # helpers
    "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "MEDIA_SUFFIXES", "iter_media", "iter_media_blocks", "safe_relative",
    "own_folder", "UnsafePathError", "atomic_output", "StagedFile", "write_bytes_atomic", "result_table",
    "write_table", "load_json", "load_yaml", "parse_json", "UntrustedInputError", "format_date", "date_for", "say",
    "read_user_text", "decode_user_text",
    # the package: __version__, the version a host records as the writer of its outputs
    "__version__",
    # media listing: count_media, how many media files a walk would list (for a progress line, before the lazy
    # walk); OWN_FOLDER_PREFIXES, the prefixes of the folders DeepFaune writes (never read back as input)
    "count_media", "OWN_FOLDER_PREFIXES",
    # locking and all-or-nothing writes: FolderLock, an exclusive lock on a person's data (LockedError: another
    # live run holds it); commit_files, several files replaced together through a journal; recover, an interrupted
    # commit finished or undone (JournalError: it cannot be, safely); staging_dir, a private folder beside a target
    # for its new files; file_sha256, a file's content hash (to tell a file a person changed since we wrote it)
    "FolderLock", "LockedError", "commit_files", "recover", "JournalError", "staging_dir", "file_sha256",
    # safe paths and untrusted input: not_regular, why a path is not a regular file (a FIFO, a device...) or None;
    # is_plain_name, a name that is one plain path component; open_folder, a folder opened without following a
    # symlink (UnsafeFolderError otherwise)
    "not_regular", "is_plain_name", "open_folder", "UnsafeFolderError",
    # placing files: place_file, a file hard-linked at a new name, else copied with its dates; safe_folder_name, a
    # label as one folder name every system accepts; unique_target, name.ext, else name_2.ext... (DeepFaune's rule)
    "place_file", "safe_folder_name", "unique_target",
    # the taxonomy: Taxon, one DeepFaune label as a taxon (scientific name, rank, ranks above); taxa, every taxon
    # by English key; taxon_for_key, the taxon a decision key names (None for empty, vehicle...); key_for_name, the
    # key a person's scientific name stands for; LabelReader, the one rule by which a person's label becomes a key
    "Taxon", "taxa", "taxon_for_key", "key_for_name", "LabelReader",
    # the models: load_card, a model version's card (ModelCard: its files, classes, detectors and their thresholds);
    # JSON_THRESHOLD, DeepFaune's MegaDetector threshold (known boxes at or below it are ignored)
    "load_card", "ModelCard", "JSON_THRESHOLD",
    # boxes and tables: normalised_box, a pixel box (x1, y1, x2, y2) as (x, y, w, h) fractions of the image;
    # TableWriter, DeepFaune's result table written block by block (a ResultWriter); escape_formula, a cell a
    # spreadsheet will not run as a formula
    "normalised_box", "TableWriter", "escape_formula",
    # progress: Progress, a progress line with rate and ETA on stderr (a host's notes go through `say`)
    "Progress",
    # media_format, what a file's first bytes say it is ("jpeg", "png", "mp4"...; None: not a photo or video), for
    # bytes from elsewhere (a download) before they are kept
    "media_format",
    # stand-in runs: STANDIN_MARK, what every file of a run on stand-in models (random weights) says of its labels
    # (`RunResults.standin`); STANDIN_COLUMN/STANDIN_VALUE, the column a stand-in run's tables get, and its value
    "STANDIN_MARK", "STANDIN_COLUMN", "STANDIN_VALUE",
    # HEAD_COLUMN, the column a table gets when an adapted head decided (`RunResults.head`, `run --adapted NAME`):
    # the head's name in every row; never there without --adapted
    "HEAD_COLUMN",
    # label_text(classes, key, lang): a decision key in one of the model card's languages
    "label_text",
    # what people record besides a label (`deepfaune review`, `--import`): HumanLabel (Decision.human), its
    # HumanFields (count, sex, life stage, behaviour, individual, comment; HUMAN_FIELDS their names); fields_given,
    # how many files of a run hold each; fields_note, the lines a host says of those it wrote and those it cannot
    # hold (nothing a person recorded is dropped without a word)
    "HumanLabel", "HumanFields", "HUMAN_FIELDS", "fields_given", "fields_note",
    # the boxes people draw in `deepfaune review` (HumanBoxes), which replace the detector's in RunResults.raw;
    # HUMAN_BOX_SOURCE, such a box's Detection.source (a host that can mark a person's box, marks it)
    "HumanBoxes", "HUMAN_BOX_SOURCE",
]
