"""Run options resolved once and flags declared once with their validators (utils/options.py)."""
from __future__ import annotations

import argparse

import pytest
import torch

import train
from utils.device import world_size
from utils.errors import UserError
from utils.options import (RunOptions, add_arch_arguments, as_flag, at_least, between, parse, parser, positive,
                           resolve_arch_arguments, resolve_device_flag)


def _p():
    p = parser()
    p.add_argument("--n", type=at_least(2), default=2)
    p.add_argument("--lr", type=positive(), default=0.1)
    p.add_argument("--share", type=between(0, 1), default=1.0)
    p.add_argument("--mode", choices=["a", "b"], default="a")
    return p


@pytest.mark.parametrize("argv,message", [
    (["--n", "1"], "--n 1: must be an integer >= 2"), (["--n", "x"], "--n x: must be an integer"),
    (["--lr", "0"], "--lr 0: must be > 0"), (["--lr", "nan"], "--lr nan: must be > 0"),
    (["--lr=-1e-4"], "--lr -0.0001: must be > 0"), (["--share", "1.5"], "--share 1.5: must be >= 0 and <= 1"),
])
def test_a_validator_beside_the_flag_names_flag_and_value(argv, message):
    with pytest.raises(UserError) as e:
        parse(_p(), argv)
    assert str(e.value) == message


def test_valid_values_parse_and_argparse_keeps_its_own_errors(capsys):
    args = parse(_p(), ["--n", "3", "--lr", "1e-9", "--share", "0"])
    assert (args.n, args.lr, args.share) == (3, 1e-9, 0.0) and isinstance(args.n, int)
    with pytest.raises(SystemExit) as e:
        parse(_p(), ["--mode", "c"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_library_errors_name_parameters_and_the_cli_names_flags():
    with pytest.raises(UserError, match="^device 'tpu' is not one of"):
        from utils.device import resolve_device

        resolve_device("tpu")
    with pytest.raises(UserError, match="^--device 'tpu' is not one of"):
        resolve_device_flag("tpu")
    assert str(as_flag(UserError("width 3: EMNet needs an even width"), {"width": "--embed_dim"})) == \
        "--embed_dim 3: EMNet needs an even width"


def test_arch_width_defaults_to_the_registry_and_is_checked():
    p = argparse.ArgumentParser()
    add_arch_arguments(p, default="emnet")
    args = p.parse_args([])
    resolve_arch_arguments(args)
    assert args.embed_dim == 32
    args = p.parse_args(["--embed_dim", "3"])
    with pytest.raises(UserError, match="^--embed_dim 3: .*even width"):
        resolve_arch_arguments(args)


def test_run_options_built_once_from_the_flags(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert world_size() == 3
    args = train.build_parser("enhancer").parse_args(["--stage", "enhancer", "--device", "cpu", "--amp", "bf16"])
    o = RunOptions.from_args(args)
    assert (o.device, o.world, o.rank, o.seed, o.workers, o.amp_dtype, o.channels_last) == \
        (torch.device("cpu"), 3, 0, 1234, 2, torch.bfloat16, "auto")
    assert RunOptions.from_args(train.build_parser("scl").parse_args(["--device", "cpu"])).seed == 1
    with pytest.raises(UserError, match="--amp fp16 needs a CUDA device"):
        RunOptions.from_args(argparse.Namespace(**{**vars(args), "amp": "fp16"}))


def test_each_shared_flag_is_declared_once_per_parser():
    for stage in ("scl", "enhancer", "memory"):
        flags = [s for a in train.build_parser(stage)._actions for s in a.option_strings]
        assert len(flags) == len(set(flags))
        assert {"--stage", "--device", "--arch", "--embed_dim", "--random_seed", "--num_workers"} <= set(flags)


def test_parse_known_args_refuses_a_bad_choice_with_argparse_own_message(capsys):
    """argparse_unknown_stage: train.py reads --stage with parse_known_args; an invalid choice was a traceback."""
    import pytest as _pytest

    from utils import options as _options

    p = _options.parser(add_help=False)
    p.add_argument("--stage", choices=["enhancer", "memory", "scl"], default="scl")
    with _pytest.raises(SystemExit) as e:
        p.parse_known_args(["--stage", "foo"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'foo'" in err and "Traceback" not in err
