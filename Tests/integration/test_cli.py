"""The command line a person meets first (issue 28): `sluice <command> --help` prints that
command's usage and exits 0 without starting anything; a listener that cannot bind names itself
and its address; `sluice demo` prints the dashboard's URL."""
import socket
import subprocess
import time

import pytest

from conftest import SLUICE, Proc, demo_ports, free_port, wait_port

COMMANDS = {
    # command: options its usage must name
    "serve": ["--config", "--endpoint", "--listen", "--workers", "--admin", "--grace"],
    "validate": ["--offline", "FILE"],
    "demo": ["--port", "--servers", "--sim-port", "--admin"],
    "sim": ["--port", "--model", "--lora", "--max-loras", "--kv-tokens", "--time-scale", "--seed"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_commands_usage_and_exits_0(command, flag):
    # Before this, `sluice sim --help` started a server on port 8000 and never returned.
    r = subprocess.run([SLUICE, command, flag], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: sluice {command}"), r.stdout
    for option in COMMANDS[command]:
        assert option in r.stdout, f"{command} --help does not name {option}"
    assert "--help" in r.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_wins_over_other_options(command):
    # --help after other options (even ones that would start a server) still only prints.
    port = free_port()
    r = subprocess.run([SLUICE, command, "--port", str(port), "--help"] if command in ("sim", "demo")
                       else [SLUICE, command, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: sluice {command}")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()


def test_help_command_and_top_level_usage():
    r = subprocess.run([SLUICE, "help", "sim"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("usage: sluice sim")
    r = subprocess.run([SLUICE, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for command in COMMANDS:
        assert command in r.stdout
    assert "sluice <command> --help" in r.stdout


def test_unknown_option_is_a_usage_error_with_the_commands_usage():
    r = subprocess.run([SLUICE, "sim", "--hepl"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "unknown option --hepl" in r.stderr
    assert "usage: sluice sim" in r.stderr


def hold_port():
    """A plain listening socket (no SO_REUSEPORT, so Sluice's bind cannot share it)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def run_serve(args, timeout=10):
    return subprocess.run([SLUICE, "serve", *args], capture_output=True, text=True, timeout=timeout)


def test_data_listener_bind_clash_names_the_listener_and_address():
    s, port = hold_port()
    try:
        r = run_serve(["--listen", f"127.0.0.1:{port}", "--endpoint", "http://127.0.0.1:9", "--workers", "1",
                       "--drain-delay", "0s"])
    finally:
        s.close()
    assert r.returncode == 1, r.stderr
    assert f"listener 127.0.0.1:{port}: address already in use" in r.stderr, r.stderr
    assert "admin listener" not in r.stderr
    assert "bind: Address already in use" not in r.stderr


def test_admin_listener_bind_clash_names_the_admin_listener_and_address():
    s, admin = hold_port()
    try:
        r = run_serve(["--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{admin}",
                       "--endpoint", "http://127.0.0.1:9", "--workers", "1", "--drain-delay", "0s"])
    finally:
        s.close()
    assert r.returncode == 1, r.stderr
    assert f"admin listener 127.0.0.1:{admin}: address already in use" in r.stderr, r.stderr


def test_second_instance_on_the_same_admin_port(sluice, nginx_upstream):
    # Two instances on one host clash on the default admin port: the second says which.
    first = sluice(["--listen", "127.0.0.1:PORT", "--admin", "127.0.0.1:ADMIN_PORT",
                    "--endpoint", f"http://127.0.0.1:{nginx_upstream}", "--drain-delay", "0s"])
    wait_port(first.admin_port)
    r = run_serve(["--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{first.admin_port}",
                   "--endpoint", f"http://127.0.0.1:{nginx_upstream}", "--drain-delay", "0s"])
    assert r.returncode == 1
    assert f"admin listener 127.0.0.1:{first.admin_port}: address already in use" in r.stderr, r.stderr
    assert first.p.poll() is None, "the first instance must keep running"


def test_config_listener_bind_clash_names_the_address(tmp_path):
    s, port = hold_port()
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(f"listen: [{{address: '127.0.0.1:{port}'}}]\nadmin: {{address: '127.0.0.1:{free_port()}'}}\n"
                   "workers: 1\npools: [{name: p, endpoints: ['http://127.0.0.1:9']}]\n")
    try:
        r = run_serve(["--config", str(cfg)])
    finally:
        s.close()
    assert r.returncode == 1
    assert f"listener 127.0.0.1:{port}: address already in use" in r.stderr, r.stderr


def test_demo_prints_the_dashboard_url():
    port, admin, sim = demo_ports(1)
    p = Proc([SLUICE, "demo", "--port", str(port), "--servers", "1", "--sim-port", str(sim),
              "--admin", f"127.0.0.1:{admin}"])
    try:
        wait_port(port)
        out = p.wait_output("Dashboard:", timeout=10)
        assert f"Dashboard: http://127.0.0.1:{admin}/" in out, out
    finally:
        assert p.stop() == 0


def test_demo_sim_port_clash_says_which_server_and_address():
    s, sim = hold_port()
    try:
        r = subprocess.run([SLUICE, "demo", "--port", str(free_port()), "--servers", "1", "--sim-port", str(sim),
                            "--admin", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=10)
    finally:
        s.close()
    assert r.returncode == 1
    assert f"127.0.0.1:{sim}: address already in use" in r.stderr, r.stderr
