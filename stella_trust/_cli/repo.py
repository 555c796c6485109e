"""`trust repo ...`: the operator commands. This module builds the command tree, in the
order `--help` lists it; the commands live by job in repo_publishing, repo_ceremony and
repo_reports, each a thin wrapper over a command function of stella_trust.repository
(repo_options holds what they share)."""

from __future__ import annotations

import typer

from stella_trust._cli import repo_ceremony, repo_publishing, repo_reports

repo_app = typer.Typer(
    help="Create, publish and rotate the TUF repository that hosts trust (operators).",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n"
        "  trust repo init --path ./tuf-workspace\n\n"
        "  trust repo add-target trusted_root.json --path ./tuf-workspace\n\n"
        "  trust repo publish --to /srv/www/tuf --path ./tuf-workspace\n\n"
        "  trust repo check --within 60d --path ./tuf-workspace\n\n"
        "Each subcommand's --help has more examples; README.md walks whole procedures."
    ),
)
root_app = typer.Typer(
    help="Offline root ceremony: edit the staged root (version+1).",
    no_args_is_help=True,
    epilog=(
        "Examples (in the workspace directory, e.g. after cd /mnt/ceremony):\n\n"
        "  trust repo root add-key --role root --name root4\n\n"
        "  trust repo root set-threshold root 3\n\n"
        "  trust repo sign root --key keys/root.pem\n\n"
        "  trust repo sign root --key keys/root2.pem\n\n"
        "  trust repo sign root --key keys/root4.pem\n\n"
        "  trust repo commit\n\n"
        "Each subcommand's --help has more examples."
    ),
)
repo_app.add_typer(root_app, name="root")

repo_app.command("init")(repo_publishing.init)
repo_app.command("add-target")(repo_publishing.add_target)
repo_app.command("remove-target")(repo_publishing.remove_target)
repo_app.command("publish")(repo_publishing.publish)
repo_app.command("bump-online")(repo_publishing.bump_online)
repo_app.command("timestamp")(repo_publishing.timestamp)
repo_app.command("set-expiry")(repo_publishing.set_expiry)
repo_app.command("pull")(repo_publishing.pull)
repo_app.command("push")(repo_publishing.push)
root_app.command("add-key")(repo_ceremony.root_add_key)
root_app.command("revoke-key")(repo_ceremony.root_revoke_key)
root_app.command("set-threshold")(repo_ceremony.root_set_threshold)
repo_app.command("sign")(repo_ceremony.sign)
repo_app.command("payload")(repo_ceremony.payload)
repo_app.command("add-signature")(repo_ceremony.add_signature)
repo_app.command("status")(repo_reports.status)
repo_app.command("keys")(repo_reports.keys)
repo_app.command("commit")(repo_ceremony.commit)
repo_app.command("rotate")(repo_ceremony.rotate)
repo_app.command("clean")(repo_ceremony.clean)
repo_app.command("change-passphrase")(repo_reports.change_passphrase)
repo_app.command("delegate")(repo_publishing.delegate)
repo_app.command("keygen")(repo_reports.keygen)
repo_app.command("roots")(repo_reports.roots)
repo_app.command("check")(repo_reports.check)
repo_app.command("export-keys")(repo_reports.export_keys)

__all__ = ["repo_app", "root_app"]
