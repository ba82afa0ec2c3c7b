"""Issue 16 item 7: clean messages, as a user sees them on the command line.

No raw libjpeg/libpng/FFmpeg line on the terminal (their words go into the file's `warning`); video
messages name the right container; an output that is a folder, or a name that is not a table, is refused
with what to give instead; every option of every subcommand explains itself in --help; the README's
figures and columns are those of the code and the benchmarks.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from deepfaune_plugin.cli import build_parser, main
from deepfaune_plugin.plugins import default_registry
from deepfaune_plugin.table import EXTRA_COLUMNS
from imagegen import RED, make_jpeg
from test_video import RED_BGR, write_video

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 3, 6, 0, 0)
#: What the C decoders print at the start of their lines when left alone.
RAW_DECODER_LINE = re.compile(r"^(Corrupt JPEG data|Premature end of JPEG|libpng |\[[\w,]+ @ 0x|\[ ?(WARN|ERROR))")


def _damaged_mp4(path: Path) -> Path:
    data = bytearray(write_video(path, 25, 60).read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 2000, 7):  # bytes flipped in the middle of the frames
        data[i] = 0x55
    path.write_bytes(bytes(data))
    return path


def test_item16_7_decoder_lines_go_into_the_files_warning_not_the_terminal(tmp_path, standin_models):
    src = tmp_path / "season"
    good = make_jpeg(src / "cam1" / "IMG_0001.JPG", date=T0, blobs=[(RED, (300, 200, 600, 450))]).read_bytes()
    (src / "cam1" / "IMG_0002.JPG").write_bytes(good[:len(good) * 3 // 5])  # truncated: libjpeg complains
    extra = good[:-2] + b"\x00" * 700 + good[-2:]  # junk before the end marker: "N extraneous bytes"
    (src / "cam1" / "IMG_0003.JPG").write_bytes(extra)
    _damaged_mp4(src / "cam1" / "CLIP_0004.mp4")
    out = tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-m", "deepfaune_plugin.cli", "run", str(src), "--models-dir",
                           str(standin_models), "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # every file has a result, some with a warning
    raw = [line for line in done.stderr.splitlines() if RAW_DECODER_LINE.match(line)]
    assert raw == []
    assert "4 files" in done.stderr and "3 with warnings" in done.stderr
    warning = pd.read_csv(out, keep_default_na=False).set_index("filename")["warning"]
    assert warning["cam1/IMG_0001.JPG"] == ""
    assert warning["cam1/IMG_0002.JPG"] == "truncated JPEG: decoded the part present"  # libjpeg's words add nothing
    assert re.fullmatch(r"decoder said: Corrupt JPEG data: \d{3} extraneous bytes before marker 0xd9",
                        warning["cam1/IMG_0003.JPG"])
    assert warning["cam1/CLIP_0004.mp4"].startswith("decoder said: mpeg4: ")
    assert "@ 0x" not in warning["cam1/CLIP_0004.mp4"]  # FFmpeg's addresses change every run


def test_item16_7_progress_and_messages_still_reach_the_terminal_during_a_decode():
    """Python's own stderr is not caught with the decoder's (the progress line is drawn from another thread)."""
    code = ("import sys\n"
            "from deepfaune_plugin.engine.quiet import decoder_messages\n"
            "with decoder_messages() as said:\n"
            "    print('progress 1/2', file=sys.stderr)\n"
            "    import os; os.write(2, b'Corrupt JPEG data: premature end of data segment\\n')\n"
            "print(said)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr == "progress 1/2\n"
    assert done.stdout == "['Corrupt JPEG data: premature end of data segment']\n"


def test_item16_7_an_undated_video_message_names_its_container(tmp_path, standin_models, capsys):
    tree = tmp_path / "inDir"
    make_jpeg(tree / "StationA" / "fox_1.jpg", date=T0)
    clip = write_video(tree / "StationA" / "fox_clip.mp4", 25, 30,  # OpenCV's writer sets no creation time
                       blobs=lambda i: [(RED_BGR, (60, 40, 200, 160))])  # an animal: the record table lists it
    stamp = (T0 + timedelta(minutes=5)).timestamp()
    os.utime(clip, (stamp, stamp))
    status = main(["run", str(tree), "--host", "camtrapr", "--models-dir", str(standin_models), "-q",
                   "--output", str(tmp_path / "records.csv"), "--file-formats", "jpg,mp4"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "1 video(s) carry no creation date (1 MP4: not set by the camera)" in err
    assert "AVI" not in err


@pytest.mark.parametrize("host", ["folder", "camtrapr"])
def test_item16_7_an_output_that_is_a_folder_says_so(tmp_path, standin_models, capsys, host):
    tree = tmp_path / "inDir"
    make_jpeg(tree / "StationA" / "fox_1.jpg", date=T0)
    target = tmp_path / ("results" if host == "folder" else "records.csv")
    target.mkdir()
    status = main(["run", str(tree), "--host", host, "--models-dir", str(standin_models), "-q", "--output",
                   str(target)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"{target}" in err and "is a folder" in err and "free some space" not in err and "Traceback" not in err
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name, says", [
    ("x.txt", "x.txt: unsupported output type '.txt'; use .csv or .xlsx"),
    ("results", "results: the name has no file type; use .csv or .xlsx"),
])
def test_item16_7_an_output_name_that_is_not_a_table_is_refused_with_the_formats(tmp_path, standin_models, capsys,
                                                                                 name, says):
    src = tmp_path / "season"
    make_jpeg(src / "cam1" / "IMG_0001.JPG", date=T0)
    status = main(["run", str(src), "--models-dir", str(standin_models), "-q", "--output", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert status == 1 and says in err
    assert not (tmp_path / name).exists() and not (tmp_path / "deepfaune-run.json").exists()


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not helps.get(name):
                    missing.append(f"{path} {name}")
                missing += _options_without_help(sub, f"{path} {name}")
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_item16_7_every_option_of_every_subcommand_has_help():
    parser = build_parser(default_registry())
    assert _options_without_help(parser, "deepfaune") == []


def _figure(text: str, row: str) -> float:
    match = re.search(rf"^\| {re.escape(row)} \| 2 \| \*\*([\d.]+)\*\*", text, re.M)
    assert match, row
    return float(match.group(1))


def test_item16_7_the_fast_figure_is_the_measured_one():
    results = (REPO / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    speedup = _figure(results, "**ours --fast**") / _figure(results, "**ours fp32** (quiet machine)")
    said = f"about {speedup:.1f}x faster"
    assert said == "about 1.5x faster"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert said in next(line for line in readme.splitlines() if line.startswith("| `--fast`"))
    help_text = " ".join(build_parser(default_registry())._subparsers._group_actions[0].choices["run"]
                         .format_help().split())
    assert said in help_text


def test_item16_7_every_column_of_the_table_is_documented():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The result table"):readme.index("## How it is built")]
    assert [c for c in EXTRA_COLUMNS if f"`{c}`" not in section] == []
    assert "decoder said" in section  # what the warning column holds, in the user's words
