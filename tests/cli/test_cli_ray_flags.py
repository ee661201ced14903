"""``serve --ray`` / ``embed --ray`` flag errors: one line, exit 1, before any Ray starts."""

from __future__ import annotations

import pytest
from clikit import error_line, run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--replicas", "2"], "--replicas needs --ray"),
        (["serve", "--ray-address", "auto"], "--ray-address needs --ray"),
        (["serve", "--autoscale", "1:2"], "--autoscale needs --ray"),
        (["serve", "--replica-threads", "2"], "--replica-threads needs --ray"),
        (["serve", "--ray", "--replicas", "0"], "--replicas must be at least 1, got 0"),
        (["serve", "--ray", "--replicas", "2", "--autoscale", "1:2"], "not both"),
        (["serve", "--ray", "--autoscale", "3"], "--autoscale wants MIN:MAX replicas"),
        (["serve", "--ray", "--autoscale", "3:1"], "needs 1 <= MIN <= MAX"),
        (["serve", "--ray", "--replica-threads", "0"], "--replica-threads must be at least 1"),
        (["serve", "--upscale-delay", "1"], "--upscale-delay needs --ray"),
        (["serve", "--ray", "--autoscale-target", "4"], "--autoscale-target needs --autoscale MIN:MAX"),
        (["serve", "--ray", "--autoscale", "1:2", "--autoscale-target", "0"], "--autoscale-target must be above 0"),
        (["serve", "--ray", "--autoscale", "1:2", "--downscale-delay", "-1"], "--downscale-delay must be 0 or more"),
        (["serve", "--ray", "--autoscale", "1:2", "--autoscale-window", "0"], "--autoscale-window must be above 0"),
        (["embed", "--shard-rows", "5", "x"], "--shard-rows needs --ray"),
        (["embed", "-f", "parquet", "-o", "x.parquet", "x"], "--format parquet needs --ray"),
        (["embed", "-i", "a.txt", "b.txt"], "several --input files need --ray"),
        (["embed", "some text", "--ray"], "--ray embeds --input files, not TEXT arguments"),
        (["embed", "--ray", "-i", "a.txt"], "--ray needs --output DIR"),
        (["embed", "--ray", "-i", "-", "-o", "d"], "not stdin"),
        (["embed", "--ray", "-i", "a.txt", "-o", "d", "-f", "json"], "not one json document"),
        (["embed", "--ray", "-i", "a.txt", "-o", "d", "--actor-threads", "0"], "at least 1"),
    ],
)
def test_flag_errors(capsys, home, argv, message) -> None:
    code, _, err = run(capsys, *argv, *(["--no-pull"] if argv[0] == "serve" else []))
    assert code == 1
    assert message in error_line(err)
