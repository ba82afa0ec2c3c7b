"""Videos through decisions, the result store and a whole folder run on stand-in models.

DeepFaune 1.4.1 (PredictorVideo) pools a video's sampled frames exactly like a sequence
(repeated frames counted each time), counts the maximum over frames, and shows the box of a
key frame.  The stand-in detector sees a saturated red blob as an animal and a green one as a
person (tests/imagegen.py).
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepfaune_plugin.api import RunSettings
from deepfaune_plugin.decisions import decide_group, decide_run
from deepfaune_plugin.engine.keyframe import key_frame
from deepfaune_plugin.engine.video import FILE_DATE, NO_FRAMES
from deepfaune_plugin.pipeline import run
from deepfaune_plugin.store import decode, encode
from deepfaune_plugin.types import ANIMAL, EMPTY, PERSON, VEHICLE, Detection, MediaItem, RawResult
from imagegen import RED, make_jpeg
from test_decisions import CLASSES
from test_video import GREEN_BGR, RED_BGR, deepfaune_sampling, set_mp4_creation_time, write_video


def frame(number, category=EMPTY, logits=None, n=1, people=0, failure=None) -> RawResult:
    dets = [Detection((10.0 + k, 20.0, 60.0 + k, 80.0), 0.9 - 0.01 * k, category) for k in range(n)] \
        if category != EMPTY else []
    dets += [Detection((100.0, 100.0, 150.0, 200.0), 0.7, PERSON)] * people
    return RawResult(relpath="v.mp4", width=320, height=240, detections=dets,
                     selected=0 if dets else None, frame_number=number, failure=failure,
                     logits=None if logits is None else np.asarray(logits, dtype=np.float32))


def as_video(frames, relpath="v.mp4") -> RawResult:
    return RawResult(relpath=relpath, width=320, height=240, frames=frames, frame_rate=30.0)


def softmax_top(mean_logits, temperature):
    z = np.asarray(mean_logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(np.argmax(p)), float(p.max())


# ------------------------------------------------------------------------------------------------
# Key frame, pooling, counts
# ------------------------------------------------------------------------------------------------
def test_key_frame_is_the_largest_animal_logit():
    frames = [frame(0, ANIMAL, [1.0, 0.5, 0, 0]), frame(10), frame(20, ANIMAL, [0.2, 3.5, 0, 0]),
              frame(30, ANIMAL, [3.5, 0, 0, 0]), frame(40, PERSON)]
    assert key_frame(frames) == 2  # 3.5 first reached in frame 20 (ties: the first)


def test_key_frame_quirk_negative_logits_lose_to_a_person_frame():
    # DeepFaune's argmax runs over the animal columns of every non-empty frame: a person frame counts as 0s
    frames = [frame(0, ANIMAL, [-1.0, -2.0, -3.0, -0.5]), frame(5, PERSON), frame(9, ANIMAL, [-0.2, -1, -1, -1])]
    assert key_frame(frames) == 1


def test_key_frame_without_animals():
    assert key_frame([frame(0), frame(1, VEHICLE), frame(2, PERSON), frame(3, PERSON)]) == 2
    assert key_frame([frame(0, PERSON), frame(1, VEHICLE), frame(2, VEHICLE)]) == 1  # vehicles outnumber
    assert key_frame([frame(0), frame(8, failure="beyond the last frame")]) is None


def test_a_video_pools_its_frames_like_a_sequence_repeats_included():
    # a very short video: frame 0 sampled 8 times; 8 animal rows, so the multi-row temperature 1.04
    logits = [0.3, 2.2, 0.1, -0.4]
    video = as_video([frame(0, ANIMAL, logits) for _ in range(8)] + [frame(k) for k in (1, 2, 3, 4)])
    best, p = softmax_top(logits, 1.04)
    decision = decide_group([video], CLASSES, 0.5, "en")
    assert decision.key == "bird" and best == 1
    assert decision.raw_score == pytest.approx(p, abs=1e-6)
    assert decision.raw_score != pytest.approx(softmax_top(logits, 1.10)[1], abs=1e-4)
    # the same frames as separate rows give the same answer: a video is its frames
    assert decide_group(video.frames, CLASSES, 0.5, "en") == decision


def test_failed_and_empty_frames_never_vote():
    frames = [frame(0), frame(5, ANIMAL, [0.0, 0.0, 3.0, 0.0]), frame(60, failure="beyond the last frame")]
    decision = decide_group([as_video(frames)], CLASSES, 0.5, "en")
    assert decision.key == "fox" and decision.raw_score == pytest.approx(softmax_top([0, 0, 3, 0], 1.10)[1], abs=1e-6)
    assert decide_group([as_video([frame(0), frame(1)])], CLASSES, 0.5, "en").key == "empty"


def test_counts_are_maxima_over_frames():
    video = as_video([frame(0, ANIMAL, [1, 0, 0, 0], n=1, people=2), frame(1, ANIMAL, [1, 0, 0, 0], n=3),
                      frame(2, PERSON), frame(3, failure="frame could not be decoded")])
    assert (video.count, video.humancount) == (3, 2)
    image = frame(0, ANIMAL, [1, 0, 0, 0], n=2, people=1)
    assert (image.count, image.humancount) == (2, 1)  # images unchanged


def test_decide_run_gives_one_row_per_video(tmp_path):
    frames = [frame(0, ANIMAL, [0.1, 0.2, 2.5, 0.0], n=2), frame(10, PERSON), frame(20, ANIMAL, [0.0, 0.1, 2.9, 0.3])]
    video = as_video(frames, "cam/v.mp4")
    video.detections, video.selected, video.frame_number = list(frames[2].detections), 0, 20
    still = RawResult(relpath="cam/a.jpg", width=320, height=240, detections=[], selected=None)
    items = [MediaItem(tmp_path / "cam/v.mp4", "cam/v.mp4", "cam"), MediaItem(tmp_path / "cam/a.jpg", "cam/a.jpg", "cam")]
    d = {x.relpath: x for x in decide_run(items, [video, still], CLASSES, RunSettings(lang="en", threshold=0.5))}
    v = d["cam/v.mp4"]
    best, p = softmax_top((np.float32([0.1, 0.2, 2.5, 0.0]) + np.float32([0.0, 0.1, 2.9, 0.3])) / 2, 1.04)
    assert (v.prediction, v.predictionbase, v.score, v.scorebase) == ("fox", "fox", int(p * 100) / 100, int(p * 100) / 100)
    assert (v.count, v.humancount, v.box) == (2, 1, frames[2].detections[0].box)
    assert d["cam/a.jpg"].seqnum != v.seqnum and d["cam/a.jpg"].prediction == "empty"


# ------------------------------------------------------------------------------------------------
# Result store
# ------------------------------------------------------------------------------------------------
def test_store_keeps_a_video_losslessly():
    frames = [frame(0, ANIMAL, [0.1, -2.5, 1e-7, 3.0000002], n=2, people=1), frame(0, ANIMAL, [0.1, -2.5, 1e-7, 3.0000002]),
              frame(57), frame(60, failure="beyond the last frame")]
    frames[0].bird_logits = np.float32(np.linspace(-1, 1, 8) / 3)
    raw = as_video(frames, "cam/v.mp4")
    raw.frame_rate = 29.97002997002997
    raw.detections, raw.selected, raw.frame_number = list(frames[0].detections), 0, 0
    raw.logits, raw.bird_logits = frames[0].logits, frames[0].bird_logits
    raw.date, raw.date_source = datetime(2024, 5, 3, 6, 0, 7), "container"
    raw.warnings = ["decoded with PyAV (OpenCV cannot open it)"]
    back = decode("cam/v.mp4", encode(raw))
    assert encode(back) == encode(raw)
    assert (back.frame_rate, back.frame_number, back.date, back.date_source) == (raw.frame_rate, 0, raw.date, "container")
    assert [f.frame_number for f in back.frames] == [0, 0, 57, 60]
    assert [f.failure for f in back.frames] == [None, None, None, "beyond the last frame"]
    assert back.frames[0].logits.tobytes() == frames[0].logits.tobytes()
    assert back.frames[0].bird_logits.tobytes() == frames[0].bird_logits.tobytes()
    assert back.frames[0].detections == frames[0].detections and back.frames[1].bird_logits is None
    assert (back.count, back.humancount) == (2, 1)
    # an image's payload is unchanged in meaning
    image = decode("a.jpg", encode(frame(3, ANIMAL, [1, 2, 3, 4])))
    assert image.frames == [] and image.frame_rate is None and image.frame_number == 3


# ------------------------------------------------------------------------------------------------
# A folder of videos, end to end on stand-in models
# ------------------------------------------------------------------------------------------------
ONE = [(RED_BGR, (20, 20, 80, 80))]
TWO = ONE + [(RED_BGR, (200, 20, 260, 80))]
PERSON_BLOB = [(GREEN_BGR, (120, 90, 180, 170))]
CLIP_DATE = datetime(2024, 5, 3, 6, 0, 7)


def _clip_blobs(i: int):
    if i < 40:
        return ONE
    if 100 <= i < 200:
        return TWO
    if i >= 250:
        return PERSON_BLOB
    return []


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    clip = write_video(root / "cam1" / "clip.mp4", 30, 300, _clip_blobs)  # 10 s
    set_mp4_creation_time(clip, CLIP_DATE)
    write_video(root / "cam1" / "walk.avi", 15, 15, lambda i: PERSON_BLOB)  # 1 s
    quiet = write_video(root / "cam2" / "quiet.avi", 15, 150)
    stamp = datetime(2023, 7, 14, 21, 3, 9).timestamp()
    os.utime(quiet, (stamp, stamp))
    write_video(root / "cam2" / "none.avi", 15, 0)
    write_video(root / "cam2" / "short.mp4", 30, 60, lambda i: ONE)  # 2 s: DeepFaune samples frame 60 of 0..59
    (root / "cam2" / "broken.mp4").write_bytes(np.random.default_rng(2).integers(0, 256, 40_000, np.uint8).tobytes())
    make_jpeg(root / "cam1" / "IMG_0001.JPG", date=datetime(2024, 5, 3, 6, 0, 0), blobs=[(RED, (300, 200, 600, 450))])
    return root


@pytest.fixture(scope="module")
def summary(folder, standin_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "table.csv"
    store = tmp_path_factory.mktemp("store") / "store.sqlite"
    settings = RunSettings(models_dir=standin_models, lang="en", threshold=0.5)
    first = run(folder, settings, host="folder", output=out, progress=False, log=lambda m: None, store=store,
                report=False)
    again = run(folder, settings, host="folder", output=out.with_name("again.csv"), progress=False,
                log=lambda m: None, store=store, report=False)
    return first, again, out


def test_folder_lists_videos(folder, summary):
    first, _, _ = summary
    assert sorted(i.relpath for i in first.manifest.items) == [
        "cam1/IMG_0001.JPG", "cam1/clip.mp4", "cam1/walk.avi", "cam2/broken.mp4", "cam2/none.avi", "cam2/quiet.avi",
        "cam2/short.mp4"]


def test_video_frames_are_deepfaune_samples(summary):
    first, _, _ = summary
    clip = first.results.raw["cam1/clip.mp4"]
    assert [f.frame_number for f in clip.frames] == deepfaune_sampling(300, 30) == \
        [0, 10, 20, 30, 40, 50, 60, 70, 127, 184, 241, 298]
    assert clip.frame_rate == 30.0 and (clip.width, clip.height) == (320, 240)
    assert [f.count for f in clip.frames] == [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 0, 0]
    assert [f.humancount for f in clip.frames] == [0] * 11 + [1]
    assert [f.category for f in clip.frames] == [ANIMAL] * 4 + [EMPTY] * 4 + [ANIMAL] * 2 + [EMPTY, PERSON]
    assert (clip.count, clip.humancount) == (2, 1)
    walk = first.results.raw["cam1/walk.avi"]
    assert [f.frame_number for f in walk.frames] == [0, 2, 4, 6, 8, 10, 12, 14]


def test_one_row_per_video_with_pooled_decision(summary):
    first, _, out = summary
    table = pd.read_csv(out, keep_default_na=False).set_index("filename")
    assert len(table) == 7
    clip = first.results.raw["cam1/clip.mp4"]
    animals = [f for f in clip.frames if f.category == ANIMAL]
    mean = np.mean(np.stack([f.logits for f in animals]), axis=0, dtype=np.float32)
    best, p = softmax_top(mean, CLASSES.temperature_multi)  # 6 animal frames: T = 1.04
    row = table.loc["cam1/clip.mp4"]
    assert row["prediction"] == row["predictionbase"] == row["top1"] == first.results.classes.labels("en")[best]
    assert row["score"] == row["scorebase"] == int(np.float32(p) * np.float32(100)) / 100  # float32, as DeepFaune
    assert (row["count"], row["humancount"], row["date"]) == (2, 1, "2024:05:03 06:00:07")
    # the box is the key frame's: the frame with the largest animal logit
    peak = [float(np.max(f.logits)) if f.category == ANIMAL else 0.0 if f.category != EMPTY else -np.inf
            for f in clip.frames]  # a person frame counts as logits of 0
    key = peak.index(max(peak))
    assert clip.frame_number == clip.frames[key].frame_number
    assert clip.selected_detection == clip.frames[key].selected_detection
    assert float(row["bbox_x"]) == pytest.approx(clip.selected_detection.box[0] / 320, abs=1e-6)
    walk = table.loc["cam1/walk.avi"]
    assert (walk["prediction"], walk["score"], walk["count"], walk["humancount"]) == ("human", 1.0, 0, 1)
    quiet = table.loc["cam2/quiet.avi"]
    assert (quiet["prediction"], quiet["count"], quiet["date"]) == ("empty", 0, "2023:07:14 21:03:09")
    assert first.results.raw["cam2/quiet.avi"].date_source == FILE_DATE
    assert first.results.raw["cam1/clip.mp4"].date_source == "container"
    # each video is a sequence of its own; the image too
    assert table["seqnum"].nunique() == 7
    short = first.results.raw["cam2/short.mp4"]
    assert [f.frame_number for f in short.frames] == [0, 8, 16, 24, 32, 40, 48, 56, 57, 58, 59, 60]
    assert short.frames[-1].failure == "beyond the last frame" and short.warnings == []
    assert [f.category for f in short.frames[:-1]] == [ANIMAL] * 11
    assert (table.loc["cam2/short.mp4", "count"], table.loc["cam2/short.mp4", "failure"]) == (1, "")


def test_video_failures_are_rows_with_a_reason(summary):
    _, _, out = summary
    table = pd.read_csv(out, keep_default_na=False).set_index("filename")
    assert table.loc["cam2/none.avi", "failure"] == NO_FRAMES
    assert table.loc["cam2/broken.mp4", "failure"].startswith("cannot decode video (OpenCV")
    assert table.loc["cam2/none.avi", "prediction"] == table.loc["cam2/broken.mp4", "prediction"] == ""


def test_rerun_reuses_stored_videos(summary):
    first, again, out = summary
    assert again.results.backend_info["reused"] == 5 and again.results.backend_info["computed"] == 2  # failures retried
    a = pd.read_csv(out, keep_default_na=False)
    b = pd.read_csv(out.with_name("again.csv"), keep_default_na=False)
    pd.testing.assert_frame_equal(a, b)
    assert encode(again.results.raw["cam1/clip.mp4"]) == encode(first.results.raw["cam1/clip.mp4"])


def test_undecodable_frame_inside_a_video_is_a_warning(standin_models):
    from deepfaune_plugin.engine.video import VideoFrames
    from deepfaune_plugin.hooks.deepfaune import DeepFaunePredictor
    from test_video import frame_picture

    predictor = DeepFaunePredictor(RunSettings(models_dir=standin_models))
    pictures = {0: frame_picture(0, ONE), 150: None, 299: frame_picture(299, TWO)}
    clip = VideoFrames([0, 0, 150, 299], [pictures[i] for i in (0, 0, 150, 299)], 30.0, 300, "opencv")
    raw = predictor.infer_video("v.mp4", clip)
    assert [f.frame_number for f in raw.frames] == [0, 0, 150, 299]
    assert [f.count for f in raw.frames] == [1, 1, 0, 2] and raw.count == 2
    assert raw.frames[2].failure == "frame could not be decoded"
    assert raw.warnings == ["frames not decoded: 150 (DeepFaune counts them empty)"]
    assert raw.frames[1].logits.tobytes() == raw.frames[0].logits.tobytes()  # a repeat: same outputs
    assert raw.frame_number in (0, 299) and raw.selected_detection is not None
