"""SAML ACS sign-ins per second: identity's checks against python3-saml's own
``process_response`` on the same responses, in the same run.

The responses are real: ``devtools.samlidp`` (pysaml2 building them, xmlsec1 signing with
RSA-SHA256), one per AuthnRequest id, made before anything is timed.

- **baseline**: python3-saml as an application uses it, ``OneLogin_Saml2_Auth(request,
  settings).process_response(request_id=…)``, settings parsed once (as an app keeps them).
- **ours, in process** (``consume`` not given): ``acs.verify`` — our hostile-XML parse,
  python3-saml's strict validation, our checks on the signed assertion and the mapping to an
  ExternalIdentity (no database).
- **ours, end to end** (``consume`` given): ``consume(saml_response, request_id)`` is called
  once per response (each is used once: the replay cache would refuse a second use), e.g. a
  POST to the gateway's ``/auth/saml/acs`` for responses answering requests the gateway
  issued (``responses_for`` signs them for given request ids).

Paired: passes of ``batch`` responses alternate between the kinds (the leading kind
rotating) for ``seconds`` in all; the figure is each kind's median pass rate.
``python -m bench.saml [--seconds S]`` runs the in-process figures.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable, Sequence

from bench.common import figure, log, median
from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, ENTRA_MFA, SamlIdP
from ontrackio.identity.sso.saml import acs, rules

ORIGIN = "https://bench.ontrack.test"
GOAL = 0.6


def config_for(idp: SamlIdP) -> rules.IdpConfig:
    return rules.validate_config(
        idp_entity_id=idp.entity_id,
        sso_url=idp.sso_url,
        certificates=[k.cert_pem for k in idp.keys],
        email_attribute=EMAIL_ATTRIBUTE,
    )


def responses_for(
    idp: SamlIdP, sp: rules.SpEndpoints, request_ids: Sequence[str]
) -> list[tuple[str, str]]:
    """(SAMLResponse form value, request id) for each id, signed by ``idp``."""
    out = []
    for i, rid in enumerate(request_ids):
        email = f"user{i}@bench.example"
        value = idp.encoded(
            sp_entity_id=sp.entity_id,
            acs_url=sp.acs_url,
            in_response_to=rid,
            name_id=email,
            attributes={EMAIL_ATTRIBUTE: [email]},
            authn_class=ENTRA_MFA,
        )
        out.append((value, rid))
    return out


def _python3_saml(config: rules.IdpConfig, sp: rules.SpEndpoints) -> Callable[[str, str], None]:
    from onelogin.saml2.auth import OneLogin_Saml2_Auth

    settings = acs.onelogin_settings(config, sp, None)
    base = sp.request_data()

    def process(value: str, rid: str) -> None:
        auth = OneLogin_Saml2_Auth(dict(base, post_data={"SAMLResponse": value}), settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            auth.process_response(request_id=rid)
        if auth.get_errors() or not auth.is_authenticated():
            raise RuntimeError(f"python3-saml refused a bench response: {auth.get_errors()}")

    return process


def _ours(config: rules.IdpConfig, sp: rules.SpEndpoints) -> Callable[[str, str], None]:
    def verify(value: str, rid: str) -> None:
        if acs.verify(value, config, sp).in_response_to != rid:
            raise RuntimeError("a bench response answered another request")

    return verify


def run(
    seconds: float = 10.0,
    *,
    responses: int = 100,
    batch: int = 10,
    consume: Callable[[str, str], object] | None = None,
    request_ids: Sequence[str] | None = None,
    idp: SamlIdP | None = None,
    origin: str = ORIGIN,
) -> tuple[list[dict], dict]:
    """(figures, raw numbers). With ``consume``, ``request_ids`` (issued by the system under
    test, e.g. from ``/auth/saml/login`` redirects) name the responses to make, and ``idp``
    is the IdP the tenant trusts; each response is consumed once, so the run ends when they
    are used up or ``seconds`` have passed."""
    own = idp is None
    idp = idp or SamlIdP("https://idp.bench.test/metadata")
    try:
        sp = rules.SpEndpoints.from_origin(origin)
        config = config_for(idp)
        ids = list(request_ids or [f"ONELOGIN_bench{i:06d}" for i in range(responses)])
        made = time.perf_counter()
        pool = responses_for(idp, sp, ids)
        log(f"saml: {len(pool)} signed responses in {time.perf_counter() - made:.1f} s")
        kinds: dict[str, Callable[[str, str], object]] = {
            "python3-saml": _python3_saml(config, sp),
            "ours": consume or _ours(config, sp),
        }
        fresh = list(pool) if consume is not None else None  # end to end: each used once
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline and (fresh is None or len(fresh) >= batch):
            order = list(kinds)[i % 2 :] + list(kinds)[: i % 2]
            for kind in order:
                if kind == "ours" and fresh is not None:
                    chunk, fresh = fresh[:batch], fresh[batch:]
                else:
                    chunk = [pool[(i * batch + j) % len(pool)] for j in range(batch)]
                start = time.perf_counter()
                for value, rid in chunk:
                    kinds[kind](value, rid)
                rates[kind].append(len(chunk) / (time.perf_counter() - start))
            i += 1
        ours, base = median(rates["ours"]), median(rates["python3-saml"])
        where = "end to end" if consume is not None else "identity's checks, in process"
        fig = figure(
            f"SAML ACS sign-ins ({where})",
            ours,
            base,
            "sign-ins/s",
            f">= {GOAL}x python3-saml process_response",
            ours / base >= GOAL if base else False,
            f"{len(rates['ours'])} paired passes of {batch}; RSA-SHA256 assertions by pysaml2",
        )
        return [fig], {"rates": rates, "passes": i}
    finally:
        if own:
            idp.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    figs, _ = run(args.seconds)
    print(json.dumps(figs, indent=2))


if __name__ == "__main__":
    main()
