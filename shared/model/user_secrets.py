"""A CustomTask's user secrets as DRUM hands them over (its `secrets`): one typed object per credential, by its
`credential_type`, whose repr hides every string; and the values that must never be printed or logged."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, Iterable

HIDDEN = "*****"


class UnsupportedSecretError(Exception):
    pass


def _known_fields(cls: type, values: dict) -> dict:
    """What a credential holds beyond its type's fields is dropped, as DRUM drops it."""
    names = {field.name for field in fields(cls)}
    return {key: value for key, value in values.items() if key in names}


@dataclass(repr=False)
class HiddenRepr:
    def __repr__(self) -> str:
        shown = ", ".join(f"{field.name}={HIDDEN if isinstance(getattr(self, field.name), str) else getattr(self, field.name)!r}"
                          for field in fields(self))
        return f"{type(self).__name__}({shown})"

    @classmethod
    def from_dict(cls, values: dict) -> Any:
        return cls(**_known_fields(cls, values))


@dataclass(repr=False)
class AbstractSecret(HiddenRepr):
    def is_partial_secret(self) -> bool:
        """Whether part of the credential (an admin's configuration) was kept apart and is missing here."""
        return any(getattr(self, key, None) for key in ("config_id", "oauth_config_id"))


@dataclass(repr=False)
class BasicSecret(AbstractSecret):
    username: str
    password: str
    snowflake_account_name: str | None = None


@dataclass(repr=False)
class OauthSecret(AbstractSecret):
    token: str
    refresh_token: str


@dataclass(repr=False)
class S3Secret(AbstractSecret):
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    config_id: str | None = None


@dataclass(repr=False)
class AzureSecret(AbstractSecret):
    azure_connection_string: str


@dataclass(repr=False)
class AzureServicePrincipalSecret(AbstractSecret):
    client_id: str
    client_secret: str
    azure_tenant_id: str


@dataclass(repr=False)
class SnowflakeOauthUserAccountSecret(AbstractSecret):
    client_id: str | None
    client_secret: str | None
    snowflake_account_name: str | None
    oauth_issuer_type: str | None = None
    oauth_issuer_url: str | None = None
    oauth_scopes: str | None = None
    oauth_config_id: str | None = None


@dataclass(repr=False)
class SnowflakeKeyPairUserAccountSecret(AbstractSecret):
    username: str | None
    private_key_str: str | None
    passphrase: str | None = None
    config_id: str | None = None


@dataclass(repr=False)
class AdlsGen2OauthSecret(AbstractSecret):
    client_id: str
    client_secret: str
    oauth_scopes: str


@dataclass(repr=False)
class TableauAccessTokenSecret(AbstractSecret):
    token_name: str
    personal_access_token: str


@dataclass(repr=False)
class DatabricksAccessTokenAccountSecret(AbstractSecret):
    databricks_access_token: str


@dataclass(repr=False)
class ApiTokenSecret(AbstractSecret):
    api_token: str


@dataclass(repr=False)
class GCPKey(HiddenRepr):
    type: str
    project_id: str | None = None
    private_key_id: str | None = None
    private_key: str | None = None
    client_email: str | None = None
    client_id: str | None = None
    auth_uri: str | None = None
    token_uri: str | None = None
    auth_provider_x509_cert_url: str | None = None
    client_x509_cert_url: str | None = None


@dataclass(repr=False)
class GCPSecret(AbstractSecret):
    gcp_key: GCPKey | None = None
    config_id: str | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "GCPSecret":
        known = _known_fields(cls, values)
        if isinstance(known.get("gcp_key"), dict):
            known["gcp_key"] = GCPKey.from_dict(known["gcp_key"])
        return cls(**known)


SECRET_TYPES = {
    "basic": BasicSecret, "oauth": OauthSecret, "gcp": GCPSecret, "s3": S3Secret, "azure": AzureSecret,
    "azure_service_principal": AzureServicePrincipalSecret,
    "snowflake_oauth_user_account": SnowflakeOauthUserAccountSecret,
    "snowflake_key_pair_user_account": SnowflakeKeyPairUserAccountSecret, "adls_gen2_oauth": AdlsGen2OauthSecret,
    "tableau_access_token": TableauAccessTokenSecret,
    "databricks_access_token_account": DatabricksAccessTokenAccountSecret, "api_token": ApiTokenSecret,
}


def secret_of(values: dict) -> AbstractSecret:
    """The typed secret a credential's JSON object makes, by its `credential_type` (any case)."""
    kind = values["credential_type"]
    cls = SECRET_TYPES.get(kind.lower())
    if cls is None:
        raise UnsupportedSecretError(f"Unsupported secret type: {kind!r}")
    return cls.from_dict(values)


def sensitive_values(secrets: Iterable[AbstractSecret]) -> list[str]:
    """Every value the secrets hold, nested ones included, longest first: a value inside another is hidden after it."""
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            for inner in value.values():
                collect(inner)
        elif isinstance(value, str) and value:
            found.add(value)

    for secret in secrets:
        collect(asdict(secret) if is_dataclass(secret) else secret)
    return sorted(found, key=lambda value: (-len(value), value))


def scrubbed(values: list[str], text: str) -> str:
    for value in values:
        text = text.replace(value, HIDDEN)
    return text
