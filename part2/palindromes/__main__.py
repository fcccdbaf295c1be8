"""``python -m part2.palindromes``: see ``part2.palindromes.cli``."""

from common.cli import run_cli
from part2.palindromes.cli import main

run_cli(main)
