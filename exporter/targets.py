"""The targets file (``--config.file``): the (region, project) pairs one process watches, and the
named credentials they use.

::

    targets:
      - region: cn-north-4              # project_id resolved from the region when absent
      - region: ap-southeast-1
        project_id: 0123456789abcdef0123456789abcdef
        endpoint: https://vod.ap-southeast-1.myhuaweicloud.com   # optional
        credentials: media-account      # optional: the process's own chain otherwise
    credentials:
      media-account:                    # never a secret here: names of env vars or files
        ak_env: MEDIA_AK
        sk_env: MEDIA_SK

``load_targets`` reads and checks the file (nothing outside it); ``resolve_targets`` turns it into
one ``TargetSetup`` per target, reading the secrets the entries name. Every mistake is a
``ConfigError`` of one line that names the file, the target or entry, and the fix, and never a
secret value. A credentials entry has a ``method`` (``aksk``, ``token``, ``iam``), given or
inferred from its keys; a new method is one more row in ``METHODS``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from exporter.cloud.credentials import (
    FLAG_METADATA_ENDPOINT,
    AkSkCredentials,
    Credentials,
    IamPasswordCredentials,
    OidcCredentials,
    StaticTokenCredentials,
    _read_text,  # the one reader of secret files: it warns about loose permissions
    metadata_credentials,
)
from exporter.config import (
    DEFAULT_METADATA_ENDPOINT,
    Config,
    ConfigError,
    check_endpoint,
    check_project_id,
    check_region,
)

TOP_KEYS = ("targets", "credentials")
TARGET_KEYS = ("region", "project_id", "endpoint", "iam_endpoint", "credentials")
METHOD_KEY = "method"
# The quota key of targets without credentials: they all use the process's own chain.
PROCESS_CHAIN = ""
# Ten thousand targets fit in it. PyYAML parses about a megabyte a second, on the thread that
# answers signals: a larger file (a log, an image given by mistake) would hold it for minutes.
MAX_FILE_SIZE = 1 << 20

# Keys that would hold a secret itself: refused, with the key that names where it lives instead.
_SECRET_KEYS = {
    "ak": "ak_env",
    "access_key": "ak_env",
    "sk": "sk_env",
    "secret_key": "sk_env",
    "security_token": "security_token_env",
    "token": "token_env",
    "password": "password_env",
    "secret": "sk_env",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Target:
    number: int  # its place in the file, from 1, for messages
    region: str
    project_id: str | None = None
    endpoint: str | None = None
    iam_endpoint: str | None = None
    credentials: str | None = None  # an entry's name; None: the process's own chain

    def __str__(self) -> str:
        return f"target {self.number} (region {self.region})"


@dataclass(frozen=True)
class CredentialsEntry:
    """Where one account's secrets live: names of environment variables and files, never a secret."""

    name: str
    method: str
    references: Mapping[str, str]  # key -> env var name, file path or plain value (username)

    def __hash__(self) -> int:
        return hash((self.name, self.method, tuple(sorted(self.references.items()))))


@dataclass(frozen=True)
class TargetsFile:
    path: Path
    targets: tuple[Target, ...]
    credentials: Mapping[str, CredentialsEntry]


@dataclass(frozen=True)
class TargetSetup:
    """One target, resolved: its own ``Config`` (region, endpoints, project id; the shared settings
    as the flags say), its credentials, and the quota it bills (targets with the same quota key
    share one request-rate limit: they share a tenant's flow control)."""

    config: Config
    credentials: Credentials
    quota: str
    # For messages: the file, and the target in it.
    source: str = field(default="", compare=False)
    label: str = field(default="", compare=False)


# The flags a target's keys stand for, as the messages of the parts below name them.
_FLAG_KEYS = {"--region": "region", "--project-id": "project_id", "--iam-endpoint": "iam_endpoint"}
_FLAGS = re.compile(r"(?<![\w-])(" + "|".join(_FLAG_KEYS) + r")(?![\w-])")


def in_file(setup: TargetSetup, error: ConfigError) -> ConfigError:
    """``error``, met while setting up ``setup``'s target, as the file's own: naming the file and
    the target, and the keys to fix rather than flags that cannot be given with the file."""
    if not setup.source:
        return error
    problem = _FLAGS.sub(lambda flag: _FLAG_KEYS[flag.group(1)], str(error))
    return ConfigError(f"{setup.source}: {setup.label}: {problem}")


# --- credentials methods -----------------------------------------------------------------------


class EntryReader:
    """Reads what an entry names, with messages that name the file, the entry and the key: what a
    method's ``build`` is handed."""

    def __init__(
        self,
        where: str,
        entry: CredentialsEntry,
        env: Mapping[str, str],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``options``: the command's, for what an entry may leave to the flags."""
        self._where = f"{where}: credentials {entry.name!r}"
        self._entry = entry
        self._env = env
        self._options = options or {}

    def option(self, name: str) -> Any:
        """The command's option ``name`` (None when not set)."""
        return self._options.get(name)

    @property
    def references(self) -> Mapping[str, str]:
        """The entry's keys and values, ``method`` left out: names and paths, never a secret."""
        return self._entry.references

    @property
    def where(self) -> str:
        """The file and the entry, for a message."""
        return self._where

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self._where}: {problem}")

    def one_of(self, base: str, *, required: bool = True) -> str | None:
        """The secret named by ``<base>_env`` or ``<base>_file`` (exactly one may be given)."""
        env_key, file_key = f"{base}_env", f"{base}_file"
        refs = self._entry.references
        if env_key in refs and file_key in refs:
            raise self.fail(f"give {env_key} or {file_key}, not both")
        if env_key in refs:
            return self.from_env(env_key)
        if file_key in refs:
            return self.from_file(file_key)
        if required:
            raise self.fail(f"set {env_key} (an environment variable's name) or {file_key} (a file's path)")
        return None

    def from_env(self, key: str) -> str:
        name = self._entry.references[key]
        value = self._env.get(name)
        if not value or not value.strip():
            raise self.fail(
                f"{key} names {name}, which is {'blank' if value else 'not set'}: set it, or fix the name"
            )
        return value.strip()

    def from_file(self, key: str) -> str:
        path = Path(self._entry.references[key])
        # Only the line end that editors and `echo` add is dropped: other whitespace may be meant.
        text = _read_text(path, f"{self._where}: {key}").rstrip("\r\n")
        if not text:
            raise self.fail(f"{key}: {path} is empty: write the secret to it")
        return text


def _aksk(secrets: EntryReader) -> Credentials:
    access_key, secret_key = secrets.one_of("ak"), secrets.one_of("sk")
    assert access_key is not None and secret_key is not None
    return AkSkCredentials(
        access_key=access_key,
        secret_key=secret_key,
        security_token=secrets.one_of("security_token", required=False),
    )


def _token(secrets: EntryReader) -> Credentials:
    refs = secrets.references
    if "token_file" in refs and "token_env" not in refs:
        # Re-read as it changes (see auth): only checked for readability here.
        path = Path(refs["token_file"])
        _read_text(path, f"{secrets.where}: token_file")
        return StaticTokenCredentials(token=None, token_file=path)
    return StaticTokenCredentials(token=secrets.one_of("token"), token_file=None)


def _iam(secrets: EntryReader) -> Credentials:
    refs = secrets.references
    missing = [key for key in ("username", "domain") if not refs.get(key)]
    if missing:
        raise secrets.fail(f"an IAM password login needs {' and '.join(missing)}")
    password = secrets.one_of("password")
    assert password is not None
    return IamPasswordCredentials(username=refs["username"], domain=refs["domain"], password=password)


def _metadata(secrets: EntryReader) -> Credentials:
    # The instance's own agency: the endpoint is where the service answers, never a secret.
    given = secrets.references.get("metadata_endpoint")
    endpoint = given or secrets.option("metadata_endpoint")
    try:
        return metadata_credentials(endpoint or DEFAULT_METADATA_ENDPOINT)
    except ConfigError as error:
        problem = str(error)
        if given:  # the entry's key is what to fix, not the flag
            problem = problem.replace(FLAG_METADATA_ENDPOINT, "metadata_endpoint", 1)
        raise secrets.fail(problem) from None


def _oidc(secrets: EntryReader) -> Credentials:
    refs = secrets.references
    missing = [key for key in ("idp_id", "id_token_file") if not refs.get(key)]
    if missing:
        raise secrets.fail(f"a workload identity needs {' and '.join(missing)}")
    path = Path(refs["id_token_file"])
    # Re-read at every exchange (the kubelet rotates it): only checked for readability here.
    _read_text(path, f"{secrets.where}: id_token_file")
    return OidcCredentials(idp_id=refs["idp_id"], id_token_file=path)


@dataclass(frozen=True)
class Method:
    """A way to get credentials: the keys its entries may have, and how they become credentials
    (raising ``ConfigError`` through ``EntryReader.fail``). A method whose entries have no keys
    of their own is chosen only by ``method:``."""

    keys: tuple[str, ...]
    build: Callable[[EntryReader], Credentials]


METHODS: dict[str, Method] = {
    "aksk": Method(
        ("ak_env", "ak_file", "sk_env", "sk_file", "security_token_env", "security_token_file"), _aksk
    ),
    "token": Method(("token_env", "token_file"), _token),
    "iam": Method(("username", "domain", "password_env", "password_file"), _iam),
    "metadata": Method(("metadata_endpoint",), _metadata),
    "oidc": Method(("idp_id", "id_token_file"), _oidc),
}


# --- loading -----------------------------------------------------------------------------------


def _repeated_key(root: yaml.Node | None) -> tuple[str, int] | None:
    """A mapping key given twice (which YAML quietly resolves by keeping the last), and its line.
    Walked with a stack of its own: the depth of the file is no recursion limit's business. An
    alias is the node it names, walked once: aliases of aliases (billion laughs) would otherwise
    be walked as if expanded, exponentially many."""
    stack = [root] if root is not None else []
    walked: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        return str(key.value), key.start_mark.line + 1
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None


def load_targets(path: Path) -> TargetsFile:
    """The file, parsed and checked on its own (no environment read, no file it names opened)."""
    where = str(path)
    try:
        with path.open("rb") as file:
            content = file.read(MAX_FILE_SIZE + 1)
        if len(content) > MAX_FILE_SIZE:
            raise ConfigError(f"{where}: larger than 1 MiB (ten thousand targets fit in it): the right file?")
        text = content.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config.file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"--config.file: cannot read {path} ({reason})") from None
    try:
        repeated = _repeated_key(yaml.compose(text, Loader=yaml.SafeLoader))
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        # The problem only: the context snippet would quote the file, and a secret may be in it.
        line = f" (line {error.problem_mark.line + 1})" if error.problem_mark else ""
        raise ConfigError(f"{where}: not valid YAML{line}: {error.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not valid YAML") from None
    except RecursionError:
        # PyYAML's parser recurses once per level: thousands of nested brackets exhaust the stack.
        raise ConfigError(f"{where}: nested too deeply: a targets file is a few levels deep") from None
    if repeated is not None:
        twice, number = repeated
        raise ConfigError(f"{where}: line {number}: key {twice!r} is given twice: keep one")
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: expected a mapping with targets: (and credentials:)")
    _known_keys(where, document, TOP_KEYS)
    credentials = _credentials(where, document.get("credentials") or {})
    raw_targets = document.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{where}: targets: give a list of at least one target (- region: cn-north-4)")
    targets = tuple(_target(where, number, raw, credentials) for number, raw in enumerate(raw_targets, 1))
    _no_repeats(where, targets)
    return TargetsFile(path, targets, credentials)


def _known_keys(where: str, mapping: Mapping[Any, Any], known: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in known:
            nearest = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f"did you mean {nearest[0]}?" if nearest else f"known keys: {', '.join(known)}"
            raise ConfigError(f"{where}: unknown key {str(key)!r} ({hint})")


def _string(where: str, key: str, value: Any) -> str:
    if isinstance(value, int | float):
        # YAML reads an all-digit project id (or one like 12e4...) as a number, and loses it.
        raise ConfigError(f'{where}: {key} was read as a number: quote it ({key}: "...")')
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _checked(where: str, key: str, check: Callable[[str], str], value: str) -> str:
    """``check``'s verdict, its flag name swapped for the file's key."""
    try:
        return check(value)
    except ConfigError as error:
        problem = str(error).split(": ", 1)[-1]
        raise ConfigError(f"{where}: {key}: {problem}") from None


def _target(where: str, number: int, raw: Any, entries: Mapping[str, CredentialsEntry]) -> Target:
    if not isinstance(raw, dict) or "region" not in raw:
        raise ConfigError(f"{where}: target {number}: give at least region: (e.g. - region: cn-north-4)")
    region = _string(f"{where}: target {number}", "region", raw["region"])
    here = f"{where}: target {number} (region {region})"
    _checked(here, "region", check_region, region)
    _known_keys(here, raw, TARGET_KEYS)
    values = {key: _string(here, key, raw[key]) for key in TARGET_KEYS[1:] if raw.get(key) is not None}
    if "project_id" in values:
        _checked(here, "project_id", check_project_id, values["project_id"])
    for key in ("endpoint", "iam_endpoint"):
        if key in values:
            values[key] = _checked(here, key, partial(check_endpoint, option=key), values[key])
    name = values.get("credentials")
    if name is not None and name not in entries:
        nearest = difflib.get_close_matches(name, list(entries), n=1, cutoff=0.5)
        hint = f"did you mean {nearest[0]}?" if nearest else "add it under credentials:"
        raise ConfigError(f"{here}: credentials {name!r} is not defined ({hint})")
    return Target(number, region, **values)


def _no_repeats(where: str, targets: tuple[Target, ...]) -> None:
    by_project: dict[str, Target] = {}
    # Without a project id, a target is its region as one account sees it: the same region in two
    # accounts is two projects.
    by_region: dict[tuple[str, str | None, str | None], Target] = {}
    for target in targets:
        if target.project_id is not None:
            first = by_project.setdefault(target.project_id, target)
            if first is not target:
                raise ConfigError(
                    f"{where}: {target} repeats project_id {target.project_id} of {first}: remove one"
                )
        else:
            first = by_region.setdefault((target.region, target.endpoint, target.credentials), target)
            if first is not target:
                raise ConfigError(
                    f"{where}: {target} repeats {first} without a project_id: remove one, "
                    "or give each its project_id"
                )


def _credentials(where: str, raw: Any) -> dict[str, CredentialsEntry]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: credentials: give a mapping of names to entries")
    return {str(name): _entry(where, str(name), fields) for name, fields in raw.items()}


def _entry(where: str, name: str, raw: Any) -> CredentialsEntry:
    here = f"{where}: credentials {name!r}"
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{here}: give its keys (e.g. ak_env: and sk_env:)")
    for key in raw:
        if key in _SECRET_KEYS:
            instead = _SECRET_KEYS[key]
            raise ConfigError(
                f"{here}: {key} would put a secret in the file: name an environment variable "
                f"({instead}) or a file ({instead.replace('_env', '_file')}) that holds it"
            )
    every_key = (METHOD_KEY, *sorted({key for method in METHODS.values() for key in method.keys}))
    _known_keys(here, raw, every_key)
    references = {str(key): _string(here, str(key), value) for key, value in raw.items() if key != METHOD_KEY}
    method = raw.get(METHOD_KEY)
    if method is not None:
        if method not in METHODS:
            raise ConfigError(f"{here}: method {method!r} is not one of {', '.join(METHODS)}")
        stray = sorted(set(references) - set(METHODS[method].keys))
        if stray:
            raise ConfigError(f"{here}: {stray[0]} is not a key of method {method}: remove it")
    else:
        matching = [m for m, spec in METHODS.items() if set(references) & set(spec.keys)]
        if len(matching) != 1:
            raise ConfigError(
                f"{here}: mixes keys of {' and '.join(matching)}: keep one, or set method"
                if matching
                else f"{here}: set method (one of {', '.join(METHODS)})"
            )
        method = matching[0]
    for key, value in references.items():
        if key.endswith("_env") and not _names_a_variable(value):
            # Never quoted: a secret pasted here by mistake would end up in the log.
            raise ConfigError(f"{here}: {key} is not an environment variable's name: name the variable")
    return CredentialsEntry(name, method, references)


def _names_a_variable(value: str) -> bool:
    """A variable's name, and not (by its look: long, digits, no underscore) an access key pasted
    where the name goes, which the "not set" message would otherwise quote."""
    key_like = len(value) >= 16 and "_" not in value and any(c.isdigit() for c in value)
    return bool(_ENV_NAME.fullmatch(value)) and not key_like


# --- resolving ---------------------------------------------------------------------------------


def resolve_targets(
    file: TargetsFile,
    options: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    process_chain: Callable[[], Credentials],
) -> tuple[TargetSetup, ...]:
    """One ``TargetSetup`` per target, its ``Config`` built by ``Config.from_options`` from the
    command's ``options`` with the target's region, endpoints and project id put in (an empty one,
    which the exporter finds at IAM, when the target has none). Each named entry's secrets are
    read once; the process chain only when a target uses it."""
    where = str(file.path)
    credentials: dict[str | None, Credentials] = {}
    # The quota is the tenant's: named by the first entry (or the process chain) with these keys.
    quotas: dict[Credentials, str] = {}
    setups = []
    for target in file.targets:
        name = target.credentials
        if name not in credentials:
            if name is None:
                credentials[name] = process_chain()
            else:
                entry = file.credentials[name]
                credentials[name] = METHODS[entry.method].build(EntryReader(where, entry, env, options))
        chosen = credentials[name]
        needs_iam = isinstance(chosen, IamPasswordCredentials | OidcCredentials)
        if isinstance(chosen, IamPasswordCredentials) and target.project_id is None:
            # IAM scopes a password login to a project: there is none yet to log in with.
            raise ConfigError(
                f"{where}: {target}: an IAM password login cannot look up the project: set project_id"
            )
        target_options = {
            **options,
            "region": target.region,
            "endpoint": target.endpoint,
            "iam_endpoint": target.iam_endpoint,
            "project_id": target.project_id,
        }
        # No environment: HUAWEICLOUD_SDK_PROJECT_ID names the one project of the flags, not these.
        config = Config.from_options(target_options, {}, needs_iam=needs_iam)
        quota = quotas.setdefault(chosen, PROCESS_CHAIN if name is None else name)
        setups.append(TargetSetup(config, chosen, quota, source=where, label=str(target)))
    return tuple(setups)
