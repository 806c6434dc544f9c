"""Subtitles: timed cues, SubRip (.srt) files, MP4 language tags, and the ffmpeg filter that burns cues into frames.

A soft track is muxed by ``media.mux`` (``mov_text``, the subtitle codec MP4 players read); burning draws the cues
into the pixels while the job encodes (``burn_filter`` for ``VideoWriter``). Burning uses libass (imageio-ffmpeg's
ffmpeg has it) with a font file found here at run time and copied into the job's temp folder, so it works on
hosts without a fontconfig setup, where libass would otherwise draw nothing at all, silently.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

# XTTS v2's language codes -> the ISO 639-2/T codes MP4 stores as a track's language.
MP4_LANGUAGES = {
    "en": "eng", "es": "spa", "fr": "fra", "de": "deu", "it": "ita", "pt": "por", "pl": "pol", "tr": "tur",
    "ru": "rus", "nl": "nld", "cs": "ces", "ar": "ara", "zh-cn": "zho", "hu": "hun", "ko": "kor", "ja": "jpn",
    "hi": "hin",
}
_ALIASES = {"zh": "zh-cn", "zh_cn": "zh-cn"}  # Whisper reports Chinese as "zh"

FONT_ENV = "LATENTSYNC_SUBTITLE_FONT"  # a .ttf/.otf/.ttc to burn subtitles with, when the ones found lack glyphs
BURN_NAME = "burn.srt"  # the fixed names the filter reads in the job's temp folder (nothing to escape there)
FONTS_DIR = "subtitle_fonts"

_TIME = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")


@dataclass(frozen=True)
class Cue:
    """One subtitle: ``text`` shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str

    def __post_init__(self):
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.start < 0 or self.end <= self.start:
            raise InputError(f"a subtitle must end after it starts, at 0 s or later: {self.start:g}-{self.end:g} s "
                             f"({self.text[:40]!r})")


def shift_cues(cues, offset: float) -> list[Cue]:
    """The cues as seen from ``offset`` seconds on (times minus ``offset``); cues over by then are dropped, one
    running at ``offset`` starts at 0. Times stay whole milliseconds when ``offset`` is (a frame at 25 fps)."""
    shifted = []
    for cue in cues:
        if cue.end - offset > 1e-6:
            shifted.append(Cue(round(max(0.0, cue.start - offset), 6), round(cue.end - offset, 6), cue.text))
    return shifted


def iso639_2(code: str) -> str:
    """The MP4 language tag ("spa") of an XTTS language code ("es"); InputError for a language XTTS lacks."""
    key = _ALIASES.get(str(code).strip().lower(), str(code).strip().lower())
    if key in MP4_LANGUAGES:
        return MP4_LANGUAGES[key]
    if key in MP4_LANGUAGES.values():  # already a tag
        return key
    raise InputError(f"unknown subtitle language {code!r}; choose one of {', '.join(MP4_LANGUAGES)}")


def _clock(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _cue_lines(text: str) -> str:
    """The cue's text as SRT allows it: no blank line inside (a blank line ends a cue)."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line)


def srt_text(cues) -> str:
    """The cues as SubRip text (numbered from 1, "HH:MM:SS,mmm --> HH:MM:SS,mmm", a blank line after each)."""
    return "".join(f"{k}\n{_clock(c.start)} --> {_clock(c.end)}\n{_cue_lines(c.text)}\n\n"
                   for k, c in enumerate(cues, 1))


def write_srt(cues, path: str | os.PathLike) -> Path:
    """Write the cues to ``path`` as UTF-8 SubRip; returns the path."""
    path = Path(path)
    path.write_text(srt_text(cues), encoding="utf-8", newline="\n")
    return path


def read_srt(path_or_text: str | os.PathLike) -> list[Cue]:
    """The cues of a SubRip file (a path) or text (a string holding "-->"). Tolerates a byte-order mark, CRLF or CR
    line ends, a missing index line and a missing final blank line; InputError naming the line of a malformed cue."""
    if isinstance(path_or_text, str) and "-->" in path_or_text:
        text, name = path_or_text, "the subtitles"
    else:
        path = Path(path_or_text)
        if not path.is_file():
            raise InputError(f"subtitle file not found: {path}")
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{path.name} is not UTF-8 text: save the subtitles as UTF-8 SubRip (.srt)") from None
        name = path.name
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues, block = [], []
    for number, line in enumerate([*lines, ""], 1):
        if line.strip():
            block.append((number, line))
        elif block:
            cues.append(_parse_block(block, name))
            block = []
    return cues


def _parse_block(block: list[tuple[int, str]], name: str) -> Cue:
    """One cue: an optional index line, the timing line, the text lines."""
    if len(block) > 1 and block[0][1].strip().isdigit():
        block = block[1:]
    number, timing = block[0]
    m = _TIMING.match(timing)
    if not m:
        raise InputError(f"{name}, line {number}: expected a cue's time line like '00:00:01,000 --> 00:00:02,500', "
                         f"found {timing.strip()[:60]!r}; fix that line (a blank line must separate cues)")
    g = [int(x) for x in m.groups()]
    start = g[0] * 3600 + g[1] * 60 + g[2] + int(m[4].ljust(3, "0")) / 1000
    end = g[4] * 3600 + g[5] * 60 + g[6] + int(m[8].ljust(3, "0")) / 1000
    if end <= start:
        raise InputError(f"{name}, line {number}: the cue ends before it starts ({timing.strip()}); fix its times")
    return Cue(start, end, "\n".join(line.strip() for _, line in block[1:]))


# --- burning into the frames -------------------------------------------------------------------------------------

_PREFERRED_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf", "NotoSans-Regular.ttf",
                    "Helvetica.ttc", "FreeSans.ttf")


def _font_dirs() -> list[Path]:
    dirs = []
    spec = importlib.util.find_spec("matplotlib")  # ships DejaVu Sans; located without importing matplotlib
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) / "mpl-data" / "fonts" / "ttf" for p in spec.submodule_search_locations]
    home = Path.home()
    dirs += [home / ".fonts", home / ".local/share/fonts", Path("/usr/share/fonts"), Path("/usr/local/share/fonts"),
             home / "Library/Fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts")]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", r"C:\Windows")) / "Fonts")
    return [d for d in dirs if d.is_dir()]


def _candidate_fonts() -> list[Path]:
    """Font files to try, the usual sans-serif faces first, then every other font found."""
    found: dict[str, list[Path]] = {}
    for folder in _font_dirs():
        for path in folder.rglob("*"):
            # Last-resort fonts map every code point to a box showing its number: "covered", but unreadable.
            if path.suffix.lower() in (".ttf", ".otf", ".ttc") and "lastresort" not in path.name.lower() \
                    and path.is_file():
                found.setdefault(path.name, []).append(path)
    preferred = [found[name][0] for name in _PREFERRED_FONTS if name in found]
    rest = sorted({p for paths in found.values() for p in paths} - set(preferred))
    return preferred + rest


def _font_facts(path: Path) -> tuple[str, set[int] | None]:
    """The font's family name and the code points it has glyphs for (None: unknown, fontTools missing)."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return path.stem.split("-")[0], None  # libass also matches a font's PostScript name ("DejaVuSans")
    with TTFont(path, fontNumber=0, lazy=True) as font:
        family = font["name"].getBestFamilyName() or path.stem
        return family, set(font.getBestCmap() or {})


def find_subtitle_font(text: str = "") -> tuple[Path, str]:
    """A font file with glyphs for every character of ``text``, and its family name: $LATENTSYNC_SUBTITLE_FONT,
    else DejaVu Sans (matplotlib's copy or the system's), else any font installed. InputError when none fits."""
    needed = {ord(ch) for ch in text if not ch.isspace()}
    chosen = os.environ.get(FONT_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise InputError(f"{FONT_ENV}={chosen!r} is not a font file: point it at a .ttf, .otf or .ttc file")
        candidates = [Path(chosen)]
    else:
        candidates = _candidate_fonts()
    for path in candidates:
        try:
            family, covered = _font_facts(path)
        except Exception:  # a damaged or unusual font file: try the next
            continue
        if covered is None or needed <= covered:
            return path, family
    sample = "".join(sorted({chr(c) for c in needed})[:12])
    where = f"the font {chosen}" if chosen else ("no font was found on this host" if not candidates
                                                else f"none of the {len(candidates)} fonts found")
    raise InputError(f"cannot burn these subtitles: {where} has glyphs for all their characters ({sample}...). "
                     f"Install a font for their script (e.g. Noto Sans CJK) and set {FONT_ENV} to its file, or use "
                     "soft subtitles instead of burned ones.")


# A few words in each XTTS language's script: a font with these glyphs can burn that language's subtitles.
SCRIPT_SAMPLES = {
    "en": "Hello", "es": "¿Qué tal? Señor", "fr": "Ça va, élève", "de": "Grüße", "it": "Perché", "pt": "Não, ação",
    "pl": "Dzień dobry, łódź", "tr": "Güle güle, ışık", "ru": "Привет", "nl": "Één", "cs": "Dobrý den, říše",
    "ar": "مرحبا", "zh-cn": "你好，世界", "hu": "Őszintén, ű", "ko": "안녕하세요", "ja": "こんにちは、カタカナ、日本",
    "hi": "नमस्ते",
}

_NOTO = {"zh-cn": "Noto Sans CJK", "ja": "Noto Sans CJK", "ko": "Noto Sans CJK", "hi": "Noto Sans Devanagari",
         "ar": "Noto Sans Arabic"}


def check_burn_font(language: str) -> Path:
    """Before any work: the font burned subtitles in ``language`` (an XTTS code) would use; InputError naming what
    to install when no font found here has that language's script (the cues themselves are checked again when the
    job burns them)."""
    key = _ALIASES.get(str(language).strip().lower(), str(language).strip().lower())
    iso639_2(key)
    try:
        return find_subtitle_font(SCRIPT_SAMPLES[key])[0]
    except InputError:
        font = _NOTO.get(key, "Noto Sans")
        raise InputError(f"cannot burn {key} subtitles: no font on this host has that script. Install one (e.g. "
                         f"{font}) and set {FONT_ENV} to its file, or choose soft subtitles.") from None


def burn_filter(cues, workdir: Path) -> str:
    """An ffmpeg filter that draws ``cues`` into the frames (at the frames' own timestamps): the cues and a font
    are written under ``workdir`` (the job's temp folder) and the filter names them there."""
    cues = list(cues)
    if not cues:
        raise InputError("there are no subtitles to burn in (the subtitle file has no cues)")
    font, family = find_subtitle_font("".join(c.text for c in cues))
    srt = write_srt(cues, workdir / BURN_NAME)
    fonts = workdir / FONTS_DIR
    fonts.mkdir(exist_ok=True)
    shutil.copyfile(font, fonts / font.name)
    style = f"FontName={family},FontSize=18,Outline=1.5,Shadow=0,MarginV=12"
    return (f"subtitles=filename={filter_escape(os.path.abspath(srt))}:fontsdir={filter_escape(os.path.abspath(fonts))}"
            f":force_style={filter_escape(style)}")


def filter_escape(value: str) -> str:
    """``value`` as one option value inside an ffmpeg filtergraph: escaped for the option parser (\\ ' :) and then
    for the graph parser (\\ ' [ ] , ;), as ffmpeg-filters(1) "Notes on filtergraph escaping" describes."""
    once = re.sub(r"([\\':])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", once)
