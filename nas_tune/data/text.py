"""Plain-text corpora for causal language modelling: files split into paragraphs, tokenised later into blocks.

A row is one paragraph (a blank line ends it) with its trailing whitespace, so joining rows in order gives the
file back byte for byte. `--max-*-samples`, the seeded validation hold-out and the cache all work on these
rows as they do on GLUE examples; the tokeniser then cuts the joined text into fixed-length blocks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from nas_tune.errors import UserError
from nas_tune.settings import TEXT_DATASETS, TEXT_DIR_VARIABLE, is_text_dataset  # noqa: F401  (re-exported)

CORPORA = {"shakespeare": "shakespeare"}  # --dataset name -> its folder (train.txt, validation.txt, test.txt)
assert TEXT_DATASETS == ("text", *CORPORA), (
    "nas_tune.settings.TEXT_DATASETS lists every corpus, for the fast command line"
)
_PARAGRAPH_END = re.compile(r"(?<=\n\n)(?=[^\n])")  # after a blank line, before the next paragraph's text


def read_paragraphs(path_text: str | Path) -> pd.DataFrame:
    """The file as a one-column ("text") frame of paragraphs; an empty file is refused."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"The text file {path} does not exist; check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"The text file {path} is not UTF-8 text; convert it to UTF-8.") from None
    if not text.strip():
        raise UserError(f"The text file {path} is empty; a language-modelling split needs text to predict.")
    return pd.DataFrame({"text": _PARAGRAPH_END.split(text)})


def corpus_files(name: str, data_dir: str | None) -> tuple[Path, Path, Path]:
    """train.txt, validation.txt and test.txt of a named corpus under --data-dir or $NAS_TUNE_TEXT_DIR."""
    if data_dir is not None:
        root, origin = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get(TEXT_DIR_VARIABLE):
        root, origin = Path(os.environ[TEXT_DIR_VARIABLE]).expanduser(), f"${TEXT_DIR_VARIABLE}"
    else:
        raise UserError(
            f"No folder given for the {name} corpus: set {TEXT_DIR_VARIABLE} or --data-dir to the folder "
            f"that holds {CORPORA[name]}/train.txt, validation.txt and test.txt."
        )
    folder = root / CORPORA[name]
    files = tuple(folder / f"{split}.txt" for split in ("train", "validation", "test"))
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise UserError(
            f"The {name} corpus is incomplete under {root} (from {origin}): missing {', '.join(missing)}; "
            f"point {origin} at the folder that holds {CORPORA[name]}/."
        )
    return files
