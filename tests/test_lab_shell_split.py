"""The lab shell's fast command-line reader agrees with shlex (its reference) on every line.

The fast path reads the shapes arcfleet sends (shlex.quote'd words, && || ;) with two regular
expressions; anything else goes to shlex. Lines are generated from random words and operators,
quoted every way shlex.quote and a hand-written command can quote them, plus shapes the fast
path must hand over (backslashes, lone | and &, runs of operators, unbalanced quotes)."""

from __future__ import annotations

import random
import shlex

import pytest

from fleet.lab.shell import _split_fast, split_command, split_with_shlex

ALPHABET = "ab z\t\n'\"\\;&|$`#*?~=-./é\u00a0\u2028"
SHAPES = ["sh -c {}", "sudo -n sh -c {}", "{}", "x={} ; y", "a && {} || c"]


def _word(rng: random.Random) -> str:
    while True:
        word = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        # A quoted ';' is a word to sh, and to the fast path; shlex returns the same token for
        # it as for the operator, so the reference cannot judge that one case.
        if word not in ("&&", "||", ";"):
            return word


def _line(rng: random.Random) -> str:
    words = [shlex.quote(_word(rng)) for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.3:  # hand-written pieces next to quoted ones
        words.append(rng.choice(["plain", '"dq"', "'sq'", "a'b'\"c\"", "&&", "||", ";",
                                 "a;b", "x&&y", ";;", "|", "&", "\\x", "'open", '"open']))
    ops = [rng.choice([" ", " ", " && ", " || ", "; ", ";"]) for _ in words[1:]]
    body = words[0] + "".join(op + w for op, w in zip(ops, words[1:], strict=True))
    return rng.choice(SHAPES).format(shlex.quote(body) if rng.random() < 0.5 else body)


def _shlex_or_error(line: str) -> object:
    try:
        return split_with_shlex(line)
    except ValueError:
        return ValueError


def test_fast_reader_agrees_with_shlex_on_random_lines() -> None:
    rng = random.Random(20261203)
    fast_used = 0
    for _ in range(20_000):
        line = _line(rng)
        expected = _shlex_or_error(line)
        fast = _split_fast(line)
        if fast is not None:
            fast_used += 1
            assert fast == expected, line
        got: object
        try:
            got = split_command(line)
        except ValueError:
            got = ValueError
        assert got == expected, line
    assert fast_used > 10_000  # the common shapes do take the fast path


def test_the_host_script_command_takes_the_fast_path() -> None:
    script = "set -u\nprintf '%s\\n' \"$B\"\ncase $x in *'\"'[Ss]tatus'\":'*) ;; esac\n" * 300
    line = "sudo -n sh -c " + shlex.quote(script)
    assert _split_fast(line) == [(";", ["sudo", "-n", "sh", "-c", script])]


@pytest.mark.parametrize("line", ["a | b", "a & b", "a\\ b", "a ;; b", "'open", "a &&& b"])
def test_other_shapes_go_to_shlex(line: str) -> None:
    assert _split_fast(line) is None
