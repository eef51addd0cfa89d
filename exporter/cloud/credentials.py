"""Where the exporter's credentials come from: the environment and files, never the command line.

AK/SK is looked up the way the official SDK does it (``EnvCredentialProvider`` then
``ProfileCredentialProvider``): the environment counts only when it holds both the AK and the SK,
otherwise the SDK credentials file is read. A static token and an IAM password login are the
alternatives. The platform can hand out temporary keys too (see ``providers``): a CCE workload
identity (``HUAWEICLOUD_SDK_IDP_ID`` and ``HUAWEICLOUD_SDK_ID_TOKEN_FILE``, which the SDK's
environment provider takes before AK/SK) and the ECS/BMS metadata service, which ``auto`` asks
last, as the SDK's provider chain does, with a short connect timeout.

Every mistake raises ``ConfigError`` with one line that names what is missing and never a secret
value; secrets are also kept out of every ``repr``.
"""

from __future__ import annotations

import configparser
import logging
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from exporter.cloud.errors import AuthError
from exporter.cloud.providers import MetadataKeys, TemporaryKey
from exporter.config import AUTH_METHODS, DEFAULT_METADATA_ENDPOINT, ConfigError, check_endpoint

log = logging.getLogger("exporter.cloud.credentials")

ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
ENV_CREDENTIALS_FILE = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
ENV_IDP_ID = "HUAWEICLOUD_SDK_IDP_ID"
ENV_ID_TOKEN_FILE = "HUAWEICLOUD_SDK_ID_TOKEN_FILE"
ENV_AUTH_TOKEN = "VOD_EXPORTER_AUTH_TOKEN"
ENV_IAM_PASSWORD = "VOD_EXPORTER_IAM_PASSWORD"

# The options the CLI offers for the same things; named here so that messages tell the user
# exactly what to set.
FLAG_TOKEN_FILE = "--auth.token-file"
FLAG_IAM_USERNAME = "--iam.username"
FLAG_IAM_DOMAIN = "--iam.domain"
FLAG_IAM_PASSWORD_FILE = "--iam.password-file"
FLAG_METADATA_ENDPOINT = "--auth.metadata-endpoint"

# Asking the metadata service at start-up: a host with none (a laptop, a pod without host
# network) must not hold the start for long. The SDK allows 3 s to connect and 3 s to read.
METADATA_PROBE_TIMEOUT = httpx.Timeout(3.0, connect=1.0)

# The SDK's credentials file: an INI file whose [basic] section holds project-scoped credentials.
SDK_FILE_SECTION = "basic"
SDK_DEFAULT_FILE = Path(".huaweicloud") / "credentials"


@dataclass(frozen=True)
class AkSkCredentials:
    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    project_id: str | None = None


@dataclass(frozen=True)
class StaticTokenCredentials:
    """A token given as is, or a file holding one (re-read when it changes; see ``auth``)."""

    token: str | None = field(repr=False)
    token_file: Path | None

    def __post_init__(self) -> None:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give exactly one of token and token_file")


@dataclass(frozen=True)
class IamPasswordCredentials:
    username: str
    domain: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class MetadataCredentials:
    """Temporary keys from the ECS/BMS metadata service at ``endpoint`` (the instance's agency).
    ``first_key``: the key fetched while checking the service at start-up, used until it is due."""

    endpoint: str = DEFAULT_METADATA_ENDPOINT
    first_key: TemporaryKey | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class OidcCredentials:
    """A CCE workload identity: the service-account token in ``id_token_file``, exchanged at IAM
    through the identity provider ``idp_id`` for temporary keys."""

    idp_id: str
    id_token_file: Path
    project_id: str | None = None


Credentials = (
    AkSkCredentials | StaticTokenCredentials | IamPasswordCredentials | MetadataCredentials | OidcCredentials
)


def resolve_credentials(
    method: str,
    env: Mapping[str, str],
    *,
    home: Path,
    token_file: Path | None = None,
    iam_username: str | None = None,
    iam_domain: str | None = None,
    iam_password_file: Path | None = None,
    metadata_endpoint: str | None = None,
    metadata_http: httpx.Client | None = None,
) -> Credentials:
    """The credentials for ``method`` (one of ``AUTH_METHODS``).

    ``auto`` takes the first complete source, in the SDK's order where the SDK has one: a workload
    identity, AK/SK (environment, then the SDK credentials file), then a static token, then an IAM
    password login, and last the metadata service at ``metadata_endpoint`` (only when one is given,
    so that library callers never reach out to 169.254.169.254 by surprise). ``metadata_http``
    asks it (default: a client with ``METADATA_PROBE_TIMEOUT``).
    """
    if method not in AUTH_METHODS:
        raise ConfigError(f"--auth.method: {method!r} is not one of {', '.join(AUTH_METHODS)}")
    if method == "oidc":
        return _oidc(env)
    if method == "metadata":
        return metadata_credentials(metadata_endpoint or DEFAULT_METADATA_ENDPOINT, metadata_http)
    if method == "auto" and (_value(env, ENV_IDP_ID) or _value(env, ENV_ID_TOKEN_FILE)):
        return _oidc(env)
    if method == "aksk":
        return _aksk(env, home)
    if method == "token":
        return _static_token(env, token_file)
    if method == "iam":
        return _iam_password(env, iam_username, iam_domain, iam_password_file)

    aksk = _look_up_aksk(env, home)
    if aksk.credentials is not None:
        return aksk.credentials
    password_given = _value(env, ENV_IAM_PASSWORD) is not None or iam_password_file is not None
    if _value(env, ENV_AUTH_TOKEN) is not None or token_file is not None:
        aksk.warn_ignored("a static token")
        return _static_token(env, token_file)
    if iam_username and iam_domain and password_given:
        aksk.warn_ignored("an IAM password login")
        return _iam_password(env, iam_username, iam_domain, iam_password_file)
    # Nothing is complete: the most useful message is about the source the user began to set up.
    if aksk.problem is not None:
        raise ConfigError(aksk.problem)
    if iam_username or iam_domain or password_given:
        return _iam_password(env, iam_username, iam_domain, iam_password_file)
    no_metadata = ""
    if metadata_endpoint is not None:
        check_endpoint(metadata_endpoint, FLAG_METADATA_ENDPOINT)  # a typo is not "no service"
        try:
            return metadata_credentials(metadata_endpoint, metadata_http)
        except ConfigError as error:
            log.debug("no credentials from the metadata service: %s", error)
            no_metadata = f", or run where the metadata service {metadata_endpoint} answers"
    raise ConfigError(
        f"no credentials: set {ENV_AK} and {ENV_SK} (or ak and sk in the [basic] section of "
        f"{aksk.file}), or {ENV_AUTH_TOKEN} or {FLAG_TOKEN_FILE}, or {FLAG_IAM_USERNAME}, "
        f"{FLAG_IAM_DOMAIN} and {ENV_IAM_PASSWORD} or {FLAG_IAM_PASSWORD_FILE}{no_metadata}"
    )


# --- platform: workload identity and metadata --------------------------------------------------


def _oidc(env: Mapping[str, str]) -> OidcCredentials:
    idp_id, token_file = _value(env, ENV_IDP_ID), _value(env, ENV_ID_TOKEN_FILE)
    if idp_id is None or token_file is None:
        if idp_id is not None or token_file is not None:
            present, absent = (ENV_IDP_ID, ENV_ID_TOKEN_FILE) if idp_id else (ENV_ID_TOKEN_FILE, ENV_IDP_ID)
            raise ConfigError(f"{present} is set but {absent} is not: set both for a workload identity")
        raise ConfigError(f"workload identity (oidc) needs {ENV_IDP_ID} and {ENV_ID_TOKEN_FILE}")
    # Only readability is checked here: kubelet rewrites the file, and it is read at each exchange.
    _read_text(Path(token_file), ENV_ID_TOKEN_FILE)
    return OidcCredentials(
        idp_id=idp_id, id_token_file=Path(token_file), project_id=_value(env, ENV_PROJECT_ID)
    )


def metadata_client(**settings: Any) -> httpx.Client:
    """A client for the metadata service: a link-local address that no proxy from the
    environment can reach, so ``HTTP_PROXY`` and the like are ignored."""
    return httpx.Client(timeout=METADATA_PROBE_TIMEOUT, trust_env=False, **settings)


def metadata_credentials(
    endpoint: str, http: httpx.Client | None = None, *, clock: Callable[[], float] = time.time
) -> MetadataCredentials:
    """Credentials from the metadata service at ``endpoint``, checked by fetching a key (once, at
    start-up: raises ``ConfigError`` in one line when the service is absent, answers garbage, or
    hands out a key that ``clock`` says has expired). ``http`` asks it (default: a client with
    ``METADATA_PROBE_TIMEOUT``)."""
    endpoint = check_endpoint(endpoint, FLAG_METADATA_ENDPOINT)
    client = http if http is not None else metadata_client()
    try:
        key = MetadataKeys(endpoint, client)()
    except AuthError as error:
        raise ConfigError(f"{FLAG_METADATA_ENDPOINT}: no temporary key: {error}") from None
    finally:
        if http is None:
            client.close()
    if key.expires_at <= clock():
        # Every call would be a 401 that blames the key, when the clocks are what is wrong.
        expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.expires_at))
        raise ConfigError(
            f"{FLAG_METADATA_ENDPOINT}: the metadata service {endpoint} hands out a key that expired at "
            f"{expired}: check the clocks of this machine and of the instance"
        )
    return MetadataCredentials(endpoint=endpoint, first_key=key)


# --- AK/SK -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AkSkLookup:
    credentials: AkSkCredentials | None
    problem: str | None  # why AK/SK are incomplete, when the user set some of them
    file: Path  # the SDK credentials file that was (or would have been) read

    def warn_ignored(self, chosen: str) -> None:
        if self.problem is not None:
            log.warning("ignoring incomplete AK/SK (%s); using %s", self.problem, chosen)


def _aksk(env: Mapping[str, str], home: Path) -> AkSkCredentials:
    aksk = _look_up_aksk(env, home)
    if aksk.credentials is not None:
        return aksk.credentials
    raise ConfigError(
        aksk.problem
        or f"no AK/SK: set {ENV_AK} and {ENV_SK}, or ak and sk in the [basic] section of {aksk.file}"
    )


def _look_up_aksk(env: Mapping[str, str], home: Path) -> _AkSkLookup:
    explicit_file = _value(env, ENV_CREDENTIALS_FILE)
    path = Path(explicit_file) if explicit_file is not None else home / SDK_DEFAULT_FILE
    for name in (ENV_AK, ENV_SK):
        value = env.get(name)
        if value and value.isspace():
            # Not "unset" (as an empty value is): a value was meant and got lost in quoting.
            raise ConfigError(f"{name} is blank: set it, or unset it")
    access_key, secret_key = _value(env, ENV_AK), _value(env, ENV_SK)
    if access_key is not None and secret_key is not None:
        # As in the SDK, a complete pair in the environment wins and the file is not even read.
        credentials = AkSkCredentials(
            access_key=access_key,
            secret_key=secret_key,
            security_token=_value(env, ENV_SECURITY_TOKEN),
            project_id=_value(env, ENV_PROJECT_ID),
        )
        return _AkSkLookup(credentials, None, path)

    env_problem = None
    if access_key is not None or secret_key is not None:
        present, absent = (ENV_AK, ENV_SK) if access_key is not None else (ENV_SK, ENV_AK)
        env_problem = f"{present} is set but {absent} is not: set both, or neither to use {path}"

    section = _read_sdk_file(path, explicit=explicit_file is not None)
    if section is None:
        return _AkSkLookup(None, env_problem, path)
    for key in ("ak", "sk"):
        if key in section and not section[key].strip():
            raise ConfigError(f"{path}: {key} in the [basic] section is blank: set it, or remove it")
    file_ak, file_sk = section.get("ak") or None, section.get("sk") or None
    if file_ak is None or file_sk is None:
        if file_ak is None and file_sk is None:
            file_problem = f"{path}: the [basic] section has no ak and sk"
        else:
            present, absent = ("ak", "sk") if file_ak is not None else ("sk", "ak")
            file_problem = f"{path}: the [basic] section has {present} but no {absent}"
        return _AkSkLookup(None, env_problem or file_problem, path)
    if env_problem is not None:
        # The SDK silently falls back to the file here; say so, since a half-set pair is usually a typo.
        log.warning("%s; using the AK/SK in %s", env_problem.partition(":")[0], path)
    credentials = AkSkCredentials(
        access_key=file_ak,
        secret_key=file_sk,
        security_token=section.get("security_token") or None,
        project_id=section.get("project_id") or None,
    )
    return _AkSkLookup(credentials, None, path)


def _read_sdk_file(path: Path, *, explicit: bool) -> Mapping[str, str] | None:
    """The ``[basic]`` section of the SDK credentials file, or ``None`` when there is none.

    A missing file at the default place is simply not a source; a missing file that
    HUAWEICLOUD_SDK_CREDENTIALS_FILE names, or any file that cannot be read or parsed, is a
    mistake the user must hear about.
    """
    if not explicit and not path.exists():
        return None
    text = _read_text(path, f"{ENV_CREDENTIALS_FILE}" if explicit else "the SDK credentials file")
    # No interpolation: a secret key may contain '%', which the SDK's own parser would choke on.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as error:
        # The parser's own message quotes the offending line, which may hold a secret.
        line = getattr(error, "lineno", None)
        if line is None and getattr(error, "errors", None):
            line = error.errors[0][0]  # type: ignore[attr-defined]  # ParsingError lists (line, text)
        where = f" (line {line})" if line else ""
        raise ConfigError(
            f"{path} is not a valid credentials file{where}: expected INI with a [basic] section"
        ) from None
    if not parser.has_section(SDK_FILE_SECTION):
        return None
    return dict(parser.items(SDK_FILE_SECTION))


# --- static token ------------------------------------------------------------------------------


def _static_token(env: Mapping[str, str], token_file: Path | None) -> StaticTokenCredentials:
    token = _value(env, ENV_AUTH_TOKEN)
    if token is not None and token_file is not None:
        raise ConfigError(f"set either {ENV_AUTH_TOKEN} or {FLAG_TOKEN_FILE}, not both")
    if token is not None:
        if not token.strip():
            raise ConfigError(f"{ENV_AUTH_TOKEN} is blank: set it to the token")
        return StaticTokenCredentials(token=token.strip(), token_file=None)
    if token_file is None:
        raise ConfigError(f"token authentication needs {ENV_AUTH_TOKEN} or {FLAG_TOKEN_FILE}")
    # Only readability is checked here: the file is re-read as it changes, and may be filled later.
    _read_text(token_file, FLAG_TOKEN_FILE)
    return StaticTokenCredentials(token=None, token_file=token_file)


# --- IAM password ------------------------------------------------------------------------------


def _iam_password(
    env: Mapping[str, str],
    username: str | None,
    domain: str | None,
    password_file: Path | None,
) -> IamPasswordCredentials:
    password = _value(env, ENV_IAM_PASSWORD)
    if password is not None and password_file is not None:
        raise ConfigError(f"set either {ENV_IAM_PASSWORD} or {FLAG_IAM_PASSWORD_FILE}, not both")
    if password_file is not None:
        # Only the line end that editors and `echo` add is dropped: other whitespace may be meant.
        password = _read_text(password_file, FLAG_IAM_PASSWORD_FILE).rstrip("\r\n")
        if not password:
            raise ConfigError(f"{FLAG_IAM_PASSWORD_FILE}: {password_file} is empty: write the password to it")
    missing = []
    if not username:
        missing.append(f"{FLAG_IAM_USERNAME} (or VOD_EXPORTER_IAM_USERNAME)")
    if not domain:
        missing.append(f"{FLAG_IAM_DOMAIN} (or VOD_EXPORTER_IAM_DOMAIN)")
    if password is None:
        missing.append(f"{ENV_IAM_PASSWORD} or {FLAG_IAM_PASSWORD_FILE}")
    if not username or not domain or password is None:
        raise ConfigError(f"IAM password login needs {' and '.join(missing)}")
    return IamPasswordCredentials(username=username, domain=domain, password=password)


# --- shared ------------------------------------------------------------------------------------


def _value(env: Mapping[str, str], name: str) -> str | None:
    """An environment value, with an empty one counting as unset (as in the SDK)."""
    return env.get(name) or None


def _read_text(path: Path, option: str) -> str:
    """The text of a file that holds secrets; warns, as ssh does, when others may read it."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(f"{option}: {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{option}: {path} is not UTF-8 text") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{option}: cannot read {path} ({reason})") from None
    if mode & 0o077:
        log.warning("%s is open to group or others (mode %04o): run chmod 600 %s", path, mode, path)
    return text
