"""Outside development mode the broker's `guest` user is refused at start; the check reads
the URL as kombu does (percent-decoding, `;`-separated failover URLs, a missing user is
kombu's default `guest`) and never echoes the URL, which carries a password."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ontrackio.core import config
from ontrackio.core.config import ConfigError, guest_broker_user

PASSWORD = "pw-never-shown-4711"
SECRETS = {
    "tenant_role_secret": "role-secret-x",
    "token_hash_key": "hash-key-x",
    # Present so that only the broker URL decides (the files are not read at load).
    "tls_ca_file": "ca.pem",
    "tls_cert_file": "{identity}.pem",
    "tls_key_file": "{identity}-key.pem",
}
REFUSED = "ONTRACK_AMQP_URL: the broker's guest user is refused outside development mode"


pytestmark = pytest.mark.usefixtures("clean_config")


def load(url: str, development: bool = False) -> config.Settings:
    return config.load(development=development, amqp_url=url, **SECRETS)


@pytest.mark.parametrize(
    "url",
    [
        f"amqp://guest:{PASSWORD}@127.0.0.1:5672/",
        f"amqp://gu%65st:{PASSWORD}@broker/vh",  # kombu decodes it to guest
        f"amqps://guest:{PASSWORD}@broker:5671/vh",
        "amqp://127.0.0.1:5672/",  # no user: kombu logs in as guest
        f"amqp://:{PASSWORD}@broker/",
        f"amqp://t1:{PASSWORD}@a/t1;amqp://guest:{PASSWORD}@b/t1",  # a failover URL
    ],
)
def test_a_guest_broker_url_is_refused_outside_development_mode(url):
    with pytest.raises(ConfigError) as info:
        load(url)
    assert str(info.value).startswith(REFUSED)
    assert PASSWORD not in str(info.value) and "\n" not in str(info.value)


def test_the_default_broker_url_is_refused_outside_development_mode():
    with pytest.raises(ConfigError, match="guest user is refused"):
        config.load(development=False, **SECRETS)


@pytest.mark.parametrize(
    "url",
    [
        f"amqp://t1a2b3c4:{PASSWORD}@127.0.0.1:5672/t1a2b3c4",
        f"amqp://Guest:{PASSWORD}@broker/",  # RabbitMQ user names are case-sensitive
        f"amqp://a:{PASSWORD}@h1/v;amqp://a:{PASSWORD}@h2/v",
    ],
)
def test_a_deployment_user_is_accepted(url):
    assert load(url).amqp_url.get_secret_value() == url


def test_development_mode_keeps_guest():
    assert load("amqp://guest:guest@127.0.0.1:5672/", development=True).development


def test_the_guest_user_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("ONTRACK_AMQP_URL", f"amqp://guest:{PASSWORD}@h/")
    for name, value in SECRETS.items():
        monkeypatch.setenv(f"ONTRACK_{name.upper()}", value)
    with pytest.raises(ConfigError) as info:
        config.load()
    assert str(info.value).startswith(REFUSED) and PASSWORD not in str(info.value)


hostile = st.text(
    st.characters(codec=None, categories=None),  # every code point, surrogates and NUL too
    max_size=80,
) | st.sampled_from(
    ["ｇｕｅｓｔ", "guest\x00", "%67%75%65%73%74", "%2567uest", "gu\u0435st", "GUEST", "g" * 10_000]
)


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=hostile, rest=hostile)
def test_any_url_is_accepted_or_refused_in_one_line_never_echoing_it(user, rest):
    url = f"amqp://{user}:{PASSWORD}@{rest}"
    try:
        s = load(url)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and PASSWORD not in message
        assert message.startswith("ONTRACK_AMQP_URL:")
    else:
        assert not guest_broker_user(s.amqp_url.get_secret_value())


@st.composite
def disguised_guest(draw) -> str:
    """ "guest" with any of its letters percent-encoded, in either hex case."""
    out = ""
    for ch in "guest":
        code = f"{ord(ch):02x}"
        out += draw(st.sampled_from([ch, f"%{code}", f"%{code.upper()}"]))
    return out


@given(user=disguised_guest(), tail=st.sampled_from(["/", "/vh", ":5672/x", "/?heartbeat=5"]))
def test_guest_is_refused_however_it_is_percent_encoded(user, tail):
    with pytest.raises(ConfigError, match="guest user is refused"):
        load(f"amqp://{user}:{PASSWORD}@broker{tail}")


# Tab, CR and LF are dropped by URL parsing (and by kombu's): a user of only those is no user.
@given(user=st.text(st.characters(codec="utf-8", exclude_characters=":@/?#[]%;\t\r\n"), min_size=1))
def test_any_other_user_is_accepted(user):
    url = f"amqp://{user}:{PASSWORD}@broker/vh"
    if user != "guest":
        assert load(url).amqp_url.get_secret_value() == url
