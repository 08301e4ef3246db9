"""Reading story corpora, cleaning, splitting, conditioning and the memory-mapped token cache.

Preparation streams: stories are read file by file (``.txt``, ``.jsonl``, ``.parquet``, each
optionally gzipped, :mod:`.corpus`), cleaned, labelled, conditioned (:mod:`.examples`) and
tokenized in chunks, in parallel worker processes for large corpora (:mod:`.workers`), and
appended to ``uint16`` token files on disk (:mod:`.prepare`).  Memory holds a few chunks, an
8-byte hash per story (to drop duplicates) and the example offsets, never the corpus.  The
result is cached under a key made of the raw files' bytes and every setting.  Training reads
it in batches (:mod:`.batches`).
"""

from ..text import clean_story, split_stories
from .batches import (
    StreamedEvalChunks,
    batch_starts,
    eval_batch_count,
    eval_chunks,
    sample_batch,
    window_starts,
)
from .corpus import SEPARATOR, read_stories, stream_stories
from .examples import PreparedData, TokenSplit, conditioned_example, unconditioned_example
from .prepare import DATA_FORMAT_VERSION, TOKENIZER_SAMPLE_CHARS, prepare_data
from .workers import PARALLEL_MIN_BYTES

__all__ = [
    "DATA_FORMAT_VERSION",
    "PARALLEL_MIN_BYTES",
    "SEPARATOR",
    "TOKENIZER_SAMPLE_CHARS",
    "PreparedData",
    "StreamedEvalChunks",
    "TokenSplit",
    "batch_starts",
    "clean_story",
    "conditioned_example",
    "eval_batch_count",
    "eval_chunks",
    "prepare_data",
    "read_stories",
    "sample_batch",
    "split_stories",
    "stream_stories",
    "unconditioned_example",
    "window_starts",
]
