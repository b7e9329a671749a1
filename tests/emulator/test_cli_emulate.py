"""`lamplighter device emulate`: runs the node to the end and shows the lamp and the node's log."""

from typer.testing import CliRunner

from tools.cli.main import app


def test_emulate_runs_and_shows_lamp_log_and_summary(tmp_path):
    result = CliRunner().invoke(app, [
        "device", "emulate", "--hours", "0.2", "--speed", "0", "--start-hour", "20",
        "--flash-dir", str(tmp_path / "flash"), "--fault", "veml7700:missing:5:8",
    ], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "emulated lamppost" in result.output and "node log" in result.output
    assert "ran 0.20 virtual hours" in result.output
    assert (tmp_path / "flash" / "queue").is_dir()  # the node's flash is where we asked


def test_emulate_refuses_a_bad_fault_spec_with_a_reason():
    result = CliRunner().invoke(app, ["device", "emulate", "--fault", "veml7700:melted:1"])
    assert result.exit_code != 0
    assert "unknown fault" in result.output
