"""The command line: deferred imports, one set of common options, the same names across commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from au_lib import cli

COMMON = {"--profile", "--device", "--no-progress"}


def _options(parser) -> set[str]:
    """The options a parser documents (former names kept as hidden aliases are left out)."""
    import argparse

    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def _subparsers(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_imports_no_subcommand_and_no_torch():
    code = ("import sys\nfrom au_lib.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('au_lib.commands.'))\n"
            "print('IMPORTED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMPORTED []" in out and "train-tcae" in out
    code = code.replace("['--help']", "['pretrain', '--help']")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMPORTED ['au_lib.commands.pretrain']" in out and "--restart" in out


def test_common_options_are_declared_once_and_offered_everywhere():
    subs = _subparsers(cli.build_parser("*"))
    for name in cli.SUBCOMMANDS:
        opts = _options(subs[name])
        if name in cli.WITHOUT_COMMON:
            assert not COMMON & opts, name
        else:
            assert COMMON <= opts, name
    folder = Path(cli.__file__).parent / "commands"
    for path in folder.glob("*.py"):
        text = path.read_text()
        for opt in COMMON:
            if path.stem not in ("data_prepare",):  # `data` actions take no common options
                assert f'"{opt}"' not in text, (path.name, opt)


def test_consistent_names_across_commands():
    subs = _subparsers(cli.build_parser("*"))
    for name in ("pretrain", "finetune", "probe", "train-tcae"):
        opts = _options(subs[name])
        assert "--data" in opts and "--out" in opts, name
        assert "--dataset" not in opts and "--no-resume" not in opts, name
    for name in ("pretrain", "train-tcae"):
        assert "--restart" in _options(subs[name])
    outs = {name: next(a for a in subs[name]._actions if "--out" in a.option_strings) for name in subs
            if "--out" in _options(subs[name]) and name != "bench"}
    assert all(not a.required for a in outs.values()), [n for n, a in outs.items() if a.required]
    assert "evaluate" in subs and subs["evaluate"] is subs["probe"]  # the former name still works


@pytest.mark.parametrize("argv", [["info", "--profile", "huge"], ["pretrain", "--bogus"]])
def test_bad_arguments_fail_with_status_2(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown profile" in err or "unrecognized arguments: --bogus" in err


def test_train_tcae_defaults_its_run_folder_to_the_cache_and_runs_bf16_on_cpu(tmp_path, monkeypatch):
    import torch

    from au_lib.train.engine import JsonlLogger, read_checkpoint

    monkeypatch.setenv("AU_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    rc = cli.main(["train-tcae", "--data", "toy", "--profile", "smoke", "--steps", "2", "--batch-size", "4",
                   "--checkpoint-every", "2", "--amp", "bf16", "--no-progress", "--device", "cpu"])
    run = tmp_path / "tcae" / "toy_smoke"
    assert rc == 0 and (run / "ckpt_0000002.pt").is_file()
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["amp"] == "bf16" and len(ckpt["history"]) == 1
    assert [r["step"] for r in JsonlLogger.read(run / "log.jsonl")] == [2]
