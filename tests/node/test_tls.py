"""A node serves its federation API over TLS and a peer syncs with it over https://."""

from __future__ import annotations

import datetime
import ipaddress
import json

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node import admin
from tests.federation.harness import Federation, Member, free_port


def self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "tls.crt"


async def test_sync_over_https(tmp_path):
    fed = Federation(tmp_path)
    port = free_port()
    hub_home = tmp_path / "hub"
    out = admin.init(str(hub_home), name="RILO WCA", country="CI", role="hub", regions=["WCA"],
                     listen=f"127.0.0.1:{port}", public_url=f"https://127.0.0.1:{port}")

    fed.members["hub"] = Member("hub", hub_home, out["node"], f"https://127.0.0.1:{port}", out["token"], "hub", ["WCA"])
    cert = self_signed(hub_home)
    text = (hub_home / "node.toml").read_text().replace(
        "[server]\n", '[server]\ntls_cert = "tls.crt"\ntls_key = "tls.key"\n')
    (hub_home / "node.toml").write_text(text)
    ng = fed.add("Nigeria", "NG", "national", ["WCA"])
    text = (ng.home / "node.toml").read_text().replace("[sync]\n", f'[sync]\nca_file = "{cert}"\n')
    (ng.home / "node.toml").write_text(text)
    fed.wire()
    fed.peer("Nigeria", "hub")
    try:
        await fed.start()
        ssl_ctx = __import__("ssl").create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as s:
            async with s.get(f"https://127.0.0.1:{port}/federation/v1/descriptor", ssl=ssl_ctx) as r:
                assert r.status == 200
                assert (await r.json())["node"] == out["node"]
            headers = {"Authorization": f"Bearer {ng.token}"}
            async with s.post(ng.url + "/api/v1/sync", json={}, headers=headers) as r:
                result = await r.json()
        assert result["peers"][out["node"]] == "ok", json.dumps(result)
    finally:
        await fed.stop()


async def test_officer_commands_reach_their_own_tls_node(tmp_path):
    """`cenmesh status --home DIR` on a TLS node: its public URL, trusting its own certificate."""
    import argparse
    import asyncio

    from node import officer_cli

    fed = Federation(tmp_path)
    port = free_port()
    home = tmp_path / "hub"
    out = admin.init(str(home), name="RILO WCA", country="CI", role="hub", regions=["WCA"],
                     listen=f"127.0.0.1:{port}", public_url=f"https://127.0.0.1:{port}")
    fed.members["hub"] = Member("hub", home, out["node"], f"https://127.0.0.1:{port}", out["token"], "hub", ["WCA"])
    self_signed(home)
    text = (home / "node.toml").read_text().replace("[server]\n", '[server]\ntls_cert = "tls.crt"\ntls_key = "tls.key"\n')
    (home / "node.toml").write_text(text)
    try:
        await fed.start()
        args = argparse.Namespace(home=str(home), url=None, token=None, json=True)
        status = await asyncio.to_thread(officer_cli.call, args, "GET", "/api/v1/status")
        assert status["node"] == out["node"]
    finally:
        await fed.stop()
