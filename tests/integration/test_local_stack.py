"""The local AWS stack: loopback only, h2c for the KCL, streams ACTIVE at once, started and stopped by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_processor.local.processes import LOOPBACK
from stream_processor.local.stack import LocalStack, read_state

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_FRAME_TYPE = 0x4


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by `pid`, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: set[tuple[str, int]] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            address_hex, port_hex = local.split(":")
            if width == 8:
                address = ".".join(str(b) for b in reversed(bytes.fromhex(address_hex)))
            else:
                address = "ipv6:" + address_hex
            found.add((address, int(port_hex, 16)))
    return found


def first_http2_frame_type(port: int) -> int:
    """Open a connection with HTTP/2 prior knowledge (h2c, as the KCL's Java client does) and read one frame."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(HTTP2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS frame
        header = b""
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    assert len(header) == 9, f"the server closed the connection after {header!r}"
    return header[3]


def test_every_listening_socket_of_both_servers_is_on_loopback(local_stack: LocalStack) -> None:
    for server in local_stack.servers:
        addresses = listening_addresses(server.pid)
        assert (LOOPBACK, server.port) in addresses, f"{server.name}: {addresses}"
        assert {address for address, _ in addresses} == {LOOPBACK}, f"{server.name} listens on {addresses}"


def test_kinesis_local_speaks_http2_without_tls(local_stack: LocalStack) -> None:
    kinesis, _ = local_stack.servers
    assert first_http2_frame_type(kinesis.port) == SETTINGS_FRAME_TYPE


def test_a_new_stream_is_active_and_records_round_trip_on_every_shard(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    name = new_stream(2)
    client = local_stack.kinesis_client()
    shards = client.list_shards(StreamName=name)["Shards"]
    assert len(shards) == 2
    sent = client.put_records(
        StreamName=name,
        Records=[{"Data": f"record {i}".encode(), "PartitionKey": f"key-{i}"} for i in range(50)],
    )
    assert sent["FailedRecordCount"] == 0
    received: list[bytes] = []
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = client.get_records(ShardIterator=iterator, Limit=1000)["Records"]
        assert records, f"{shard['ShardId']} got nothing from 50 spread partition keys"
        received.extend(record["Data"] for record in records)
    assert sorted(received) == sorted(f"record {i}".encode() for i in range(50))


def test_moto_serves_the_lease_table_service(local_stack: LocalStack) -> None:
    dynamodb = local_stack.client("dynamodb")
    dynamodb.create_table(
        TableName="stack-smoke",
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert dynamodb.describe_table(TableName="stack-smoke")["Table"]["TableStatus"] == "ACTIVE"
    assert local_stack.aws_settings().endpoint_url == local_stack.moto_url


def test_leaving_the_context_stops_both_servers(tmp_path: Path) -> None:
    with LocalStack(tmp_path) as stack:
        pids = [server.pid for server in stack.servers]
        ports = [server.port for server in stack.servers]
    for pid in pids:
        assert not _running(pid), f"pid {pid} still runs"
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, port), timeout=1).close()


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped (it no longer runs then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stack_command(action: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_processor", "stack", action, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_start_and_stop_commands_stop_exactly_what_start_started(tmp_path: Path) -> None:
    # GIVEN a stack started by the shell command, which outlives it
    started = _stack_command("start", tmp_path)
    assert started.returncode == 0, started.stderr
    state = read_state(tmp_path)
    assert state is not None
    try:
        assert _stack_command("status", tmp_path).returncode == 0
        assert "already running" in _stack_command("start", tmp_path).stderr
        with socket.create_connection((LOOPBACK, state.kinesis.port), timeout=2):
            pass
    finally:
        # WHEN the stop command runs
        stopped = _stack_command("stop", tmp_path)
    # THEN both recorded PIDs are gone, their ports are closed and the state file is removed
    assert stopped.returncode == 0, stopped.stderr
    assert "moto" in stopped.stdout and "kinesis-local" in stopped.stdout
    for record in (state.kinesis, state.moto):
        assert not _running(record.pid), f"{record.name} (pid {record.pid}) still runs"
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, record.port), timeout=1).close()
    assert read_state(tmp_path) is None
    assert _stack_command("status", tmp_path).returncode == 1
