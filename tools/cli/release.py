"""`lamplighter release …`: keys, builds, offline signing, statements, and the server side."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ota.bundle import load_staged, stage_release, verify_bundle, write_bundle
from ota.errors import KeyFileError, OtaError
from ota.keys import (
    MAX_REVOKED,
    PUBLIC_KEY_ENCODINGS,
    KeyRing,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    make_revocation,
    make_rotation,
    save_private_key,
    save_public_key,
)
from ota.manifest import sign_manifest
from tools.cli.api_client import ApiClient, CaOption, ServerOption, TokenOption, err

release_app = typer.Typer(
    help="Release signing keys, bundle builds, offline signing and verification.",
    no_args_is_help=True,
)

DAY = 86400


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise _fail(f"refusing to overwrite {', '.join(existing)} (use --force)")


def _load_signing_key(path: Path, password_env: str | None):
    """Load a private key; an encrypted one takes its password from the env var or a prompt."""
    password = os.environ.get(password_env, "").encode() if password_env else None
    try:
        return load_private_key(path, password)
    except KeyFileError as exc:
        if "encrypted" not in str(exc) or password_env:
            raise _fail(str(exc)) from None
    prompted = typer.prompt(f"password for {path}", hide_input=True).encode()
    try:
        return load_private_key(path, prompted)
    except KeyFileError as exc:
        raise _fail(str(exc)) from None


@release_app.command()
def keygen(
    private_key: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")],
    public_key: Annotated[Path | None, typer.Option(
        "--public", help="Where to write the public key (default: <private_key>.pub).")] = None,
    encrypt: Annotated[bool, typer.Option(
        help="Encrypt the private key with a password (prompted, or --password-env).")] = False,
    password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the password for --encrypt.")] = None,
    public_format: Annotated[str, typer.Option(
        help="Public key file format: pem, raw (32 bytes) or hex.")] = "pem",
    force: Annotated[bool, typer.Option(help="Overwrite existing key files.")] = False,
) -> None:
    """Create an Ed25519 release key pair and print its key id.

    Keep the private key offline: only the public key goes to the server and the nodes.
    """
    public_key = public_key or private_key.with_name(private_key.name + ".pub")
    if public_format not in PUBLIC_KEY_ENCODINGS:
        raise _fail(f"--public-format must be one of {', '.join(PUBLIC_KEY_ENCODINGS)}")
    _refuse_overwrite([private_key, public_key], force)
    password = None
    if encrypt:
        if password_env:
            password = os.environ.get(password_env, "").encode()
            if not password:
                raise _fail(f"environment variable {password_env} is empty")
        else:
            password = typer.prompt("password", hide_input=True,
                                    confirmation_prompt=True).encode()
    key = generate_private_key()
    save_private_key(key, private_key, password)
    save_public_key(key, public_key, public_format)
    typer.echo(f"key id {key_id(key)}")
    typer.echo(f"private key: {private_key} (keep offline)")
    typer.echo(f"public key:  {public_key}")


@release_app.command()
def build(
    source: Annotated[Path, typer.Argument(
        help="The app directory (kind app) or the firmware image file (kind firmware).")],
    out: Annotated[Path, typer.Option(help="Staging directory to create (must be empty).")],
    version: Annotated[str, typer.Option(help="Semantic version, e.g. 1.4.0.")],
    sequence: Annotated[int, typer.Option(
        help="Release sequence number; nodes only install a higher one than they run.")],
    board: Annotated[list[str], typer.Option(
        help="Compatible board name; repeat for several (e.g. esp32_devkitc, emulated). "
             "An app directory with boards/<board>.manifest files (firmware/) packs only "
             "the files those boards' manifests list: --board esp32_devkitc alone packs "
             "no emulated-board files.")],
    expires_days: Annotated[float, typer.Option(
        help="Days until nodes refuse this release (freeze protection).")] = 90,
    hardware: Annotated[list[str] | None, typer.Option(
        help="Compatible hardware revision; repeat for several (default: any).")] = None,
    kind: Annotated[str, typer.Option(help="app (a bundle of files) or firmware (one image).")]
    = "app",
    compile_py: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="Compile .py modules to .mpy with mpy-cross.")] = True,
    march: Annotated[str | None, typer.Option(
        help="mpy-cross -march for native code (e.g. xtensawin); default: bytecode only.")]
    = None,
) -> None:
    """Compile and stage a release (unsigned manifest + files); sign it with `release sign`.

    For an app directory with board manifests (firmware/boards/*.manifest) the release holds
    the files of the named boards' manifests (their union), nothing else.
    """
    now = int(time.time())
    try:
        manifest = stage_release(
            source, out, version=version, sequence=sequence, board=board,
            expires=now + int(expires_days * DAY), created=now, kind=kind,
            hardware=hardware or None, compile_py=compile_py, march=march,
        )
    except OtaError as exc:
        raise _fail(f"build failed: {exc}") from None
    typer.echo(f"staged {manifest.kind} {manifest.version} (sequence {manifest.sequence}) "
               f"for {', '.join(manifest.board)}: {len(manifest.files)} files, "
               f"{manifest.total_size} bytes")
    typer.echo(f"next: lamplighter release sign {out} --key <private key> --out <bundle>")


@release_app.command()
def sign(
    staging: Annotated[Path, typer.Argument(help="Staging directory made by `release build`.")],
    key: Annotated[Path, typer.Option(help="Release private key (PEM).")],
    out: Annotated[Path, typer.Option(help="Bundle file to write (e.g. app-1.4.0.llb).")],
    password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the key's password (else prompted if needed).")]
    = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing bundle.")] = False,
) -> None:
    """Sign a staged release offline and pack the bundle (+ the signed manifest beside it)."""
    envelope_path = out.with_name(out.name + ".manifest.json")
    _refuse_overwrite([out, envelope_path], force)
    private = _load_signing_key(key, password_env)
    try:
        manifest = load_staged(staging)
        signed = sign_manifest(manifest, private)
        size = write_bundle(staging, signed, out)
    except OtaError as exc:
        raise _fail(f"sign failed: {exc}") from None
    envelope_path.write_bytes(signed.to_bytes())
    typer.echo(f"signed {manifest.version} (sequence {manifest.sequence}) with key "
               f"{signed.key_id}")
    typer.echo(f"bundle: {out} ({size} bytes)")
    typer.echo(f"signed manifest: {envelope_path}")


def _ring(trusted: list[Path], keyring: Path | None) -> KeyRing:
    try:
        ring = KeyRing.from_json(json.loads(keyring.read_text())) if keyring else KeyRing()
        for path in trusted:
            ring.add(load_public_key(path))
    except (OSError, ValueError, OtaError) as exc:
        raise _fail(f"cannot load trusted keys: {exc}") from None
    if not ring.keys:
        raise _fail("give at least one trusted public key (--trusted) or a --keyring")
    return ring


@release_app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle file to check.")],
    trusted: Annotated[list[Path] | None, typer.Option(
        help="Trusted public key file (PEM, raw or hex); repeat for several.")] = None,
    keyring: Annotated[Path | None, typer.Option(
        help="Key ring JSON (trusted keys and revoked key ids).")] = None,
    ignore_expiry: Annotated[bool, typer.Option(
        help="Accept an expired manifest (inspection only).")] = False,
    board: Annotated[str | None, typer.Option(
        help="Also check what a node of this board checks before installing: its board, its "
             "hardware, the sequence it runs and the clock, in the node's order.")] = None,
    installed_sequence: Annotated[int, typer.Option(
        help="With --board: the sequence the node runs now (a bundle must be newer).",
        min=0)] = 0,
    hardware: Annotated[str | None, typer.Option(
        help="With --board: the node's hardware revision, for a manifest that lists some.")] = None,
) -> None:
    """Check a bundle as a node would: signature by a trusted key, expiry, every file's hash.

    With --board, the whole of what a node on that board, at --installed-sequence, checks before
    it installs: the answer to "would this node take it?".
    """
    from ota.policy import check_bundle

    if board is None and (installed_sequence or hardware):
        raise _fail("--installed-sequence and --hardware describe a node: give its --board too")
    if board is not None and ignore_expiry:
        raise _fail("--ignore-expiry is for inspection; a node never ignores expiry, so it "
                    "cannot be combined with --board")
    ring = _ring(trusted or [], keyring)
    try:
        if board is None:
            manifest = verify_bundle(bundle, ring, None if ignore_expiry else time.time())
        else:
            with open(bundle, "rb") as stream:
                manifest = check_bundle(stream, ring, installed_sequence=installed_sequence,
                                        board=board, now=time.time(), hardware=hardware)
    except OSError as exc:
        raise _fail(f"cannot read {bundle}: {exc.strerror}") from None
    except OtaError as exc:
        raise _fail(f"REFUSED ({exc.reason}): {exc}") from None
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(manifest.expires))
    typer.echo(f"OK: {manifest.kind} {manifest.version} (sequence {manifest.sequence}) signed by "
               f"{manifest.key_id}, boards {', '.join(manifest.board)}, "
               f"{len(manifest.files)} files, {manifest.total_size} bytes, expires {expires}")
    if board is not None:
        typer.echo(f"a node on board {board} at sequence {installed_sequence} would install it")


SERIAL_HELP = (
    "Serial of this statement: one above the key set's current serial (the last statement's; "
    "`lamplighter release statements` prints the next one, 1 for the first statement ever). "
    "Nodes apply statements strictly in serial order.")
UPLOAD_HELP = (
    "Send the statement to the fleet server right after writing it (checks the serial with the "
    "server first; LAMPLIGHTER_SERVER, LAMPLIGHTER_TOKEN); nodes receive it at check-in.")


def _server_for(upload: bool, server: str | None, token: str | None, serial: int,
                ca: Path | None = None):
    """With --upload: the API client, once the server confirms `serial` is its next one."""
    if serial < 1:
        raise _fail("--serial is 1 or more: the key set is at serial 0 as provisioned")
    if not upload:
        return None
    api = ApiClient(server, token, ca)
    current = server_serial(api)
    if serial != current + 1:
        raise _fail(f"the server's key set is at serial {current}: sign this statement with "
                    f"--serial {current + 1}")
    return api


@release_app.command()
def rotate(
    old_key: Annotated[Path, typer.Option(help="The current release private key (signs).")],
    new_public: Annotated[Path, typer.Option(help="The new release public key.")],
    out: Annotated[Path, typer.Option(help="Rotation statement file to write (JSON).")],
    serial: Annotated[int, typer.Option(help=SERIAL_HELP)],
    keep_old: Annotated[bool, typer.Option(
        help="Keep trusting the old key after the rotation.")] = False,
    password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the old key's password.")] = None,
    upload: Annotated[bool, typer.Option("--upload", help=UPLOAD_HELP)] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Write a rotation statement, signed by the old key, introducing the new key.

    Do not `release trust` the new key yourself: the server trusts it when the rotation is
    uploaded, and nodes when they apply it.
    """
    api = _server_for(upload, server, token, serial, ca)
    private = _load_signing_key(old_key, password_env)
    try:
        new_raw = load_public_key(new_public)
        envelope = make_rotation(private, new_raw, serial=serial, retire_old=not keep_old)
    except (OtaError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out.write_bytes(envelope)
    typer.echo(f"rotation {key_id(private)} -> {key_id(new_raw)} (serial {serial}) written to "
               f"{out}")
    if api is not None:
        publish_statement(api, envelope, out)


@release_app.command()
def revoke(
    key_ids: Annotated[list[str], typer.Argument(
        help="Key ids to revoke (1..16), or public key files (PEM, raw or hex) to revoke.")],
    key: Annotated[Path, typer.Option(
        help="A trusted, unrevoked release private key (signs the statement).")],
    serial: Annotated[int, typer.Option(help=SERIAL_HELP)],
    out: Annotated[Path, typer.Option(help="Revocation statement file to write (JSON).")],
    password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the key's password.")] = None,
    upload: Annotated[bool, typer.Option("--upload", help=UPLOAD_HELP)] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Write a signed revocation: nodes and the server refuse these key ids from then on."""
    key_ids = [key_id_argument(k) for k in key_ids]
    bad = [k for k in key_ids if len(k) != 16 or any(c not in "0123456789abcdef" for c in k)]
    if bad:
        raise _fail(f"not key ids (16 lowercase hex digits): {', '.join(bad)}")
    if len(set(key_ids)) > MAX_REVOKED:
        raise _fail(f"one statement revokes at most {MAX_REVOKED} keys: write several, one "
                    "serial each")
    api = _server_for(upload, server, token, serial, ca)
    private = _load_signing_key(key, password_env)
    try:
        envelope = make_revocation(private, key_ids, serial=serial)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    out.write_bytes(envelope)
    typer.echo(f"revocation of {len(set(key_ids))} key ids (serial {serial}) written to {out}")
    if api is not None:
        publish_statement(api, envelope, out)


# The server side: uploads, trusted keys and the statement chain.
console = Console()
CHUNK = 64 * 1024


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes, 64 KB at a time, so a large bundle never sits whole in memory."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


@release_app.command()
def upload(
    bundle: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                  help="Signed bundle (.llb) from `lamplighter release sign`.")],
    notes: Annotated[str, typer.Option(
        help="Release notes kept with the release (≤ 500 chars).")] = "",
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Upload a signed bundle; the server checks its signature against the trusted keys."""
    api = ApiClient(server, token, ca)
    size = bundle.stat().st_size
    release = api.call("POST", "/api/v1/releases", params={"notes": notes},
                       content=_chunks(bundle),
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size)})
    console.print(f"release {release['id']}: version {release['version']} sequence "
                  f"{release['sequence']} ({release['kind']}, boards "
                  f"{', '.join(release['boards'])}), {release['bundle_size']} bytes, "
                  f"sha256 {release['bundle_sha256'][:16]}…")


@release_app.command()
def trust(
    public_key: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                      help="Release public key (PEM or hex), from `keygen`.")],
    name: Annotated[str, typer.Option(help="A name to show beside the key id.")] = "",
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Make the server accept bundles signed by this key (it never needs the private key)."""
    row = ApiClient(server, token, ca).call("POST", "/api/v1/keys", json={
        "public_key": public_key.read_text().strip(), "name": name})
    console.print(f"trusted release key {row['key_id']} {row['name']}".rstrip())


@release_app.command()
def distrust(
    key_id: Annotated[str, typer.Argument(help="Key id (16 hex digits) to revoke on the server.")],
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Revoke a release key on the server: bundles it signed are refused from now on, and the
    active rollouts of releases it signed pause.

    Nodes learn of a revoked key only from a signed revocation
    (`lamplighter release revoke <key id> --key <another key> --serial N --upload`).
    """
    row = ApiClient(server, token, ca).call("POST", f"/api/v1/keys/{key_id}/revoke")
    console.print(f"revoked release key {row['key_id']} at {row['revoked_at']}")
    if row.get("note"):
        typer.echo(row["note"])


STATEMENTS = "/api/v1/keys/statements"


def server_serial(api: ApiClient) -> int:
    """The serial of the server's key set: its last statement's (0: none yet)."""
    chain = api.call("GET", STATEMENTS)
    return chain[-1]["serial"] if chain else 0


def publish_statement(api: ApiClient, envelope: bytes, source: Path) -> dict[str, Any]:
    """Send a signed statement to the server and say what it stored."""
    try:
        row = api.call("POST", STATEMENTS, content=envelope,
                       headers={"Content-Type": "application/json"})
    except typer.Exit as exc:
        if exc.exit_code == 3:  # unreachable: the statement itself is fine
            err.print(f"the statement stays in {source}; send it later with "
                      f"`lamplighter release publish {source}`")
        raise
    typer.echo(f"server: statement {row['serial']} stored ({row['summary']}); "
               f"{row['nodes_behind']} active nodes receive it at their next check-in")
    return row


@release_app.command()
def publish(
    statement: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                     help="Statement file from `release rotate` or `revoke`.")],
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Send a signed rotation or revocation to the server; nodes receive it at check-in.

    It must be the next serial of the server's chain (`lamplighter release statements`).
    """
    publish_statement(ApiClient(server, token, ca), statement.read_bytes(), statement)


@release_app.command()
def statements(
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """List the server's key statement chain, and the serial the next statement needs."""
    chain = ApiClient(server, token, ca).call("GET", STATEMENTS)
    for row in chain:
        when = row["created_at"][:16].replace("T", " ")
        typer.echo(f"{row['serial']:>4}  {row['summary']}  signed by {row['key_id']}  "
                   f"{when} by {row['created_by']}  nodes behind: {row['nodes_behind']}")
    current = chain[-1]["serial"] if chain else 0
    if not chain:
        typer.echo("no key statements yet: the key set is at serial 0")
    typer.echo(f"next statement: --serial {current + 1}")


def key_id_argument(text: str) -> str:
    """A key id as given, or the key id of the public key file of that name."""
    from ota.errors import OtaError
    from ota.keys import key_id, load_public_key

    path = Path(text)
    if not path.is_file():
        return text  # a key id (the caller says so if it is not one)
    try:
        return key_id(load_public_key(path))
    except OtaError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@release_app.command()
def keys(
    nodes: Annotated[str | None, typer.Option(
        "--nodes", metavar="KEY_ID|FILE",
        help="List the nodes that still trust this revoked key (its id or public key file).",
    )] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """List the release keys; for revoked ones, how many active nodes still trust them."""
    api = ApiClient(server, token, ca)
    if nodes:
        nodes = key_id_argument(nodes)
        rows = api.call("GET", f"/api/v1/keys/{nodes}/nodes")
        for n in rows:
            keyset = "never reported" if n["keyset"] is None else f"key set {n['keyset']}"
            seen = (n["last_seen"] or "never")[:16].replace("T", " ")
            error = f"  refused: {n['keyset_error']}" if n["keyset_error"] else ""
            typer.echo(f"{n['device_id']}  {n['pole_id']}  {keyset}  last seen {seen}{error}")
        typer.echo(f"{len(rows)} nodes still trust {nodes}")
        return
    for k in api.call("GET", "/api/v1/keys"):
        origin = (f"rotated in by statement {k['introduced_by_serial']}"
                  if k["introduced_by_serial"] else "trusted by an operator")
        if k["revoked_at"] is None:
            state = "trusted"
        elif k["revoked_by_serial"] is not None:
            state = f"REVOKED by statement {k['revoked_by_serial']}"
        else:
            state = "REVOKED on the server only"
        line = f"{k['key_id']}  {state}  ({origin}{', ' + k['name'] if k['name'] else ''})"
        if k["nodes_trusting"] is not None:
            line += f"  nodes still trusting: {k['nodes_trusting']}"
        typer.echo(line)
        if k["note"]:
            typer.echo(f"    {k['note']}")
