"""A lab host's Incus API over HTTPS, trusted the way ``incus remote add`` trusts one.

Chronicle has its own client certificate and key, made once under the lab folder
(``<lab>/incus/client.crt``, ``client.key``). A remote's server certificate is pinned on
first trust (``<lab>/incus/servers/<host>.crt``): every later connection, the exec
websockets included, accepts that certificate and no other, so a changed certificate is
an error naming the host and both SHA-256 fingerprints, never a silent re-trust. With a
trust token (made on the remote by ``incus config trust add NAME``) the client
certificate joins the remote's trust store.

``lab run --incus HOST`` hands the choice to the experiment's script as
``CHRONICLE_INCUS_REMOTE`` (a ``Remote`` as JSON); :func:`chronicle.lab.host.incus_client`
then connects there instead of the local socket.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from chronicle.errors import LabError
from chronicle.lab.hosts import LabHost
from chronicle.swap import atomic_write

ENV = "CHRONICLE_INCUS_REMOTE"
CLIENT_NAME = "chronicle"
# What the API cannot give: these figures are read from the host's /proc.
NOT_THROUGH_API = {
    "pss_mib": "PSS is summed from the host's /proc, which the Incus API does not expose",
    "rss_mib": "RSS is summed from the host's /proc, which the Incus API does not expose",
    "monitor_pss_mib": "the [lxc monitor] process is on the host, outside the API",
}
THROUGH_API = ("cgroup_mib", "cgroup_peak_mib", "disk_mib", "image_mib")


@dataclass(frozen=True)
class Remote:
    """The Incus API a run talks to: which lab host, where, whose certificate, which member."""

    host: str
    url: str
    fingerprint: str
    target: str | None = None
    lab: str = ""  # the lab folder holding the client identity and the pinned certificate
    ENV: ClassVar[str] = ENV

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Remote | None:
        text = (os.environ if environ is None else environ).get(ENV)
        return cls(**json.loads(text)) if text else None

    def client(self, timeout: float = 30) -> Any:
        host = LabHost(self.host, incus=self.url, incus_target=self.target, source=ENV)
        return connect(Path(self.lab), host, timeout=timeout)

    def sweep(self, experiment: str, run: str) -> list[str]:
        """Delete what run ``run`` of ``experiment``, its script killed by SIGKILL, left
        on this remote (the twin of ``incus.sweep_experiment`` for the local daemon); the
        names deleted. Unlike the local daemon's, a remote's instances named for the
        experiment may be another client's run's, which our lock does not hold off: an
        instance tagged with another run is left alone."""
        from pylxd.exceptions import LXDAPIException

        from chronicle.lab.subjects.base import made_by
        from chronicle.lab.subjects.incus import RUN_KEY, delete_instance

        try:
            client = self.client(timeout=10)
            names = [i.name for i in client.instances.all() if made_by(i.name, experiment)
                     and (i.config or {}).get(RUN_KEY) in (None, run)]
        except (LabError, LXDAPIException):
            return []
        for name in names:
            delete_instance(client.instances.get(name))
        return names

    def provenance(self) -> dict[str, Any]:
        return {"url": self.url, "fingerprint": self.fingerprint, "target": self.target,
                "taken": list(THROUGH_API), "not_taken": dict(NOT_THROUGH_API)}


def folder(lab: Path) -> Path:
    return lab / "incus"


def pinned_path(lab: Path, host: str) -> Path:
    return folder(lab) / "servers" / f"{host}.crt"


def fingerprint(pem: bytes | str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()


def client_identity(lab: Path) -> tuple[Path, Path]:
    """Chronicle's client certificate and key, made on first use (EC P-384, 10 years)."""
    cert, key = folder(lab) / "client.crt", folder(lab) / "client.key"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    made = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(private, hashes.SHA384()))
    folder(lab).mkdir(parents=True, exist_ok=True)
    # The key first and private from its first byte: a half-made pair is remade.
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _address(host: LabHost) -> tuple[str, int]:
    parts = urlsplit(_url(host))
    return parts.hostname or "", parts.port or 8443


def _url(host: LabHost) -> str:
    if not host.incus:
        raise LabError(f"host {host.name!r} has no 'incus' URL in lab.toml", host.source)
    return host.incus.rstrip("/")


def presented_certificate(host: LabHost, timeout: float = 10) -> str:
    """The server certificate the host's Incus API presents now (PEM); LabError if none."""
    try:
        return ssl.get_server_certificate(_address(host), timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise LabError(f"host {host.name!r}: the Incus API at {_url(host)} does not answer "
                       f"({exc.strerror or exc})", host.source) from None


def pin(lab: Path, host: LabHost) -> tuple[str, bool]:
    """Pin the host's server certificate: (its fingerprint, whether newly pinned).

    An already pinned certificate that differs from the one presented is an error.
    """
    pem = presented_certificate(host)
    path = pinned_path(lab, host.name)
    if path.exists():
        _same_as_pinned(host, path, fingerprint(pem))
        return fingerprint(pem), False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, pem.encode("ascii"))  # a torn pin would refuse every connection
    return fingerprint(pem), True


def _same_as_pinned(host: LabHost, path: Path, presented: str) -> None:
    pinned = fingerprint(path.read_bytes())
    if presented != pinned:
        raise LabError(
            f"host {host.name!r}: the Incus API at {_url(host)} presents certificate "
            f"{presented}, but {pinned} is pinned; if the host's certificate was replaced on "
            f"purpose, delete {path} and run `chronicle lab trust {host.name}` again",
            host.source)


def connect(lab: Path, host: LabHost, *, timeout: float = 30, trusted: bool = True) -> Any:
    """A pylxd client on the host's Incus API, accepting only the pinned certificate.

    ``trusted``: also require that the API trusts Chronicle's client certificate, and
    that ``incus_target`` (if any) is a member of the remote's cluster.
    """
    import pylxd
    from pylxd.client import get_session_for_url
    from pylxd.exceptions import ClientConnectionFailed
    from requests.exceptions import RequestException

    url = _url(host)
    pinned = pinned_path(lab, host.name)
    if not pinned.exists():
        raise LabError(f"host {host.name!r}: its Incus certificate is not pinned yet: run "
                       f"`chronicle lab trust {host.name} --token TOKEN`", host.source)
    cert = tuple(str(p) for p in client_identity(lab))
    session = get_session_for_url(url, verify=str(pinned), cert=cert)
    # requests would otherwise put REQUESTS_CA_BUNDLE in place of the pinned file.
    session.trust_env = False
    try:
        client = pylxd.Client(endpoint=url, cert=cert, session=session, timeout=timeout)
    except (ClientConnectionFailed, RequestException) as exc:
        if "Fingerprints did not match" in str(exc):
            _same_as_pinned(host, pinned, fingerprint(presented_certificate(host)))
        raise LabError(f"host {host.name!r}: the Incus API at {url} does not answer "
                       f"({_short(exc)})", host.source) from None
    # The exec websockets go around the requests session: hold them to the pin too.
    client.ssl_options.update(cert_reqs=ssl.CERT_REQUIRED, ca_certs=str(pinned))
    if trusted:
        _check_trusted(client, host)
    return client


def _short(exc: Exception) -> str:
    text = str(exc)
    return text.rsplit("(Caused by ", 1)[-1].rstrip(")") if "(Caused by " in text else text


def _check_trusted(client: Any, host: LabHost) -> None:
    if not client.trusted:
        raise LabError(f"host {host.name!r}: the Incus API at {_url(host)} does not trust "
                       f"Chronicle's client certificate: on the host run `incus config trust "
                       f"add {CLIENT_NAME}` and then `chronicle lab trust {host.name} --token "
                       f"TOKEN`", host.source)
    if host.incus_target is None:
        return
    if not client.server_clustered:
        raise LabError(f"host {host.name!r}: incus_target = {host.incus_target!r}, but the "
                       f"Incus at {_url(host)} is not clustered (Incus: \"Target only allowed "
                       f"when clustered\")", host.source)
    members = [m.server_name for m in client.cluster.members.all()]
    if host.incus_target not in members:
        raise LabError(f"host {host.name!r}: incus_target {host.incus_target!r} is not a "
                       f"member of the cluster (members: {', '.join(members)})", host.source)


def trust(lab: Path, host: LabHost, token: str | None) -> tuple[str, bool, Any]:
    """Pin the certificate, add ours with ``token`` when given: (fingerprint, new, client)."""
    from pylxd.exceptions import LXDAPIException

    found, new = pin(lab, host)
    client = connect(lab, host, trusted=False)
    if token and not client.trusted:
        cert, _ = client_identity(lab)
        der = _der(cert.read_bytes())
        try:
            # Incus takes the whole token; pylxd's authenticate() sends it as a password.
            client.api.certificates.post(json={"type": "client", "certificate": der,
                                               "trust_token": token.strip()})
        except LXDAPIException as exc:
            raise LabError(f"host {host.name!r}: the Incus API refused the trust token "
                           f"({exc})", host.source) from None
        client = connect(lab, host, trusted=False)
    return found, new, client


def _der(pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def remote(lab: Path, host: LabHost) -> Remote:
    """The ``Remote`` a run with ``--incus HOST`` passes on, checked: reachable, pinned
    certificate presented, trusted, target a member."""
    connect(lab, host)
    return Remote(host=host.name, url=_url(host),
                  fingerprint=fingerprint(pinned_path(lab, host.name).read_bytes()),
                  target=host.incus_target, lab=str(lab))


def host_facts(client: Any) -> dict[str, Any]:
    """The remote machine's facts, as the API gives them (``provenance.host``'s keys)."""
    env = client.host_info.get("environment", {})
    facts: dict[str, Any] = {
        "kernel": env.get("kernel_version"),
        "machine": env.get("kernel_architecture"),
        "os": " ".join(filter(None, (env.get("os_name"), env.get("os_version")))) or None,
        "hostname": env.get("server_name"),
        "kvm_kind": None,  # the API does not say whether KVM is hardware or PVM
        "cpu_model": None, "cores": None, "memory_bytes": None,
    }
    try:
        resources = client.resources
    except Exception:  # an older API without `resources`: leave them unknown
        return facts
    sockets = resources.get("cpu", {}).get("sockets") or [{}]
    facts["cpu_model"] = sockets[0].get("name")
    facts["cores"] = resources.get("cpu", {}).get("total") or None
    facts["memory_bytes"] = resources.get("memory", {}).get("total")
    return facts


def status(lab: Path, host: LabHost) -> tuple[bool, str]:
    """For ``lab hosts``: whether the host's Incus API answers and trusts us, and why not."""
    try:
        client = connect(lab, host, timeout=10)
    except LabError as exc:
        return False, exc.message
    target = f", member {host.incus_target}" if host.incus_target else ""
    return True, (f"Incus {client.host_info.get('environment', {}).get('server_version')} "
                  f"trusted{target}")
