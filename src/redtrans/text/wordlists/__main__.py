"""`python -m redtrans.text.wordlists`: rebuild the shipped word-frequency files from the installed wordfreq."""

from pathlib import Path

from redtrans.text.wordlists import build

build(Path(__file__).parent)
