"""The README's operator procedures, run as written: every line of the `sh` blocks of
Procedure 1 and of Procedure 2 step 2 is executed by bash exactly as the README prints it,
with only the absolute places (/mnt, /media, /srv) moved under a temporary directory; the
steps the README gives in prose (the plain-copy upload, the online host's pull, carrying
`staged/`) are done as the prose says. A client syncs after every step. If the README and
the code drift apart, this test fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stella_trust.repository.serve import RepositoryServer
from tests.conftest import clean_env, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import PASSPHRASES

README = Path(__file__).resolve().parents[2] / "README.md"
STAGING_TRUSTED_ROOT = (
    README.parents[1] / "shared" / "fixtures" / "sigstore" / "staging" / "trusted_root.json"
)
NEW_KEYS = {
    "ROOT4": "root four",
    "ROOT5": "root five",
    "ROOT6": "root six",
    "TARGETS_OFFLINE": "offline targets",
}


def blocks(section: str) -> list[list[str]]:
    """The `sh` blocks of a README section, as lines (comments kept: bash ignores them)."""
    text = README.read_text()
    start = text.index(section)
    end = text.index("\n### ", start + 1) if "\n### " in text[start + 1 :] else len(text)
    found = re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)
    return [[line.strip() for line in block.splitlines() if line.strip()] for block in found]


class Shell:
    def __init__(self, base: Path) -> None:
        self.base = base
        bin_dir = str(Path(sys.executable).parent)
        env = clean_env(**{f"STELLA_{k}_PASSPHRASE": v for k, v in {**PASSPHRASES, **NEW_KEYS}.items()})
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        self.env = env
        for place in ("mnt", "media/root-drive-2", "media/root-drive-3", "srv/www/tuf"):
            (base / place).mkdir(parents=True, exist_ok=True)
        self.ran: list[str] = []

    def place(self, text: str) -> str:
        for top in ("/mnt/", "/media/", "/srv/"):
            text = text.replace(f" {top}", f" {self.base}{top}").replace(f"={top}", f"={self.base}{top}")
        return text

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        expect_failure = "# exit 1" in line
        done = subprocess.run(
            ["bash", "-c", self.place(" " + line)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.base,
            timeout=120,
            check=False,
        )
        self.ran.append(line)
        if expect_failure:
            assert done.returncode == 1, f"{line}\n{done.stdout}{done.stderr}"
        else:
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        return done

    def path(self, text: str) -> Path:
        return Path(self.place(" " + text).strip())


def plain_copy(drive: Path, served: Path) -> None:
    for source in sorted(drive.rglob("*")):
        if source.is_file():
            target = served / source.relative_to(drive)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


@pytest.mark.slow
def test_procedure_1_and_procedure_2_step_2_run_as_written(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    step1, step3, step4 = blocks("### Procedure 1")
    (step2_of_procedure_2,) = blocks("### Procedure 2")
    for line in step1:
        sh.run(line)
    www = sh.path("/srv/www/tuf")
    plain_copy(sh.path("/media/repository-drive"), www)  # step 2: the upload
    assert not [p for p in www.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    root1 = "/srv/www/tuf/metadata/1.root.json"
    sh.run(f"trust repo pull --from /srv/www/tuf --root {root1} --path /srv/stella-trust-signer")
    (sh.path("/srv/stella-trust-signer") / "keys").mkdir()
    for name in ("snapshot", "timestamp"):
        shutil.copy(
            sh.path(f"/media/signing-drive/keys/{name}.pem"), sh.path("/srv/stella-trust-signer/keys")
        )
    sh.run(f"trust repo pull --from /srv/www/tuf --root {root1} --path /media/signing-drive")
    from datetime import UTC, datetime

    from stella_trust.demo.repository import FULCIO_CHAIN, fulcio_chain, rekor_keys, service_map

    with RepositoryServer(www) as server:
        # step 3, a release: content a client can sync (a service map, its Rekor key and chain)
        pem, _ = rekor_keys()
        (tmp_path / "rekor-key-v1.pub").write_bytes(pem)
        (tmp_path / "sigstore-services-v1.json").write_bytes(service_map(pem))
        (tmp_path / FULCIO_CHAIN).write_bytes(fulcio_chain(datetime.now(UTC)))
        shutil.copy(STAGING_TRUSTED_ROOT, tmp_path)  # what a StellaOps repository also carries
        for name in ("rekor-key-v1.pub", "sigstore-services-v1.json", FULCIO_CHAIN):
            sh.run(f"trust repo add-target {tmp_path / name} --path /media/signing-drive")
        for line in step3:
            sh.run(line)
        client = Client(home=tmp_path / "client", url=server.url, root=www / "metadata" / "1.root.json")
        client.home.mkdir()
        ok(client.run("init", "--tuf-url", server.url, "--root", str(client.root), "--pin", "rekor-key-v1"))
        timer = "trust repo bump-online --path /srv/stella-trust-signer --from /srv/www/tuf --to /srv/www/tuf"
        sh.run(timer + " --force")
        ok(client.run("sync"))
        # Procedure 2 step 2: targets threshold 2, staged on the offline machine, completed on CI
        shutil.copytree(www, sh.path("/media/served-copy"))
        for line in step2_of_procedure_2:
            sh.run(line)
        shutil.rmtree(sh.path("/media/signing-drive/staged"))
        shutil.move(sh.path("/mnt/ceremony/staged"), sh.path("/media/signing-drive/staged"))
        sh.run("trust repo commit --to /srv/www/tuf --path /media/signing-drive")
        ok(client.run("sync"))
        status = ok(client.status()).json()
        assert status["metadata"]["root"]["version"] == 2 and status["freshness"]["state"] == "fresh"
        # step 4, the yearly rotation, with the served state carried in
        shutil.rmtree(sh.path("/media/served-copy"))
        shutil.copytree(www, sh.path("/media/served-copy"))
        for line in step4:
            done = sh.run(line)
            if line.startswith("jq"):
                assert done.stdout.strip() == "true"
        plain_copy(sh.path("/media/repository-drive"), www)
        sh.run(timer)
        ok(client.run("sync"))
        status = ok(client.status()).json()
        assert status["metadata"]["root"]["version"] == 4 and status["freshness"]["state"] == "fresh"
    assert (tmp_path / "trusted_root.json").is_file()
    assert len(sh.ran) >= len(step1) + len(step3) + len(step4) + len(step2_of_procedure_2)


@pytest.mark.parametrize("section", ["### Procedure 1", "### Procedure 2"])
def test_every_repo_command_in_the_procedures_names_its_workspace(section: str) -> None:
    for block in blocks(section):
        for line in block:
            if line.startswith("trust repo"):
                assert "--path " in line, line
