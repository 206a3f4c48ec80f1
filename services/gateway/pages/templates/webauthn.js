/* Passkeys (WebAuthn) on our pages. Inlined into the pages that need it, allowed by its
   sha256 hash in their Content-Security-Policy (pages/render.py); nothing else runs there.
   Buttons are found by data attributes (no inline handlers):
     data-webauthn="signin"    passwordless sign-in (public: no CSRF token)
     data-webauthn="register"  a new passkey for the signed-in user
     data-webauthn="step-up"   a held session's step-up with one of the user's passkeys
   with data-next (where to go afterwards), data-csrf-token (the session's), data-error (the
   id of the alert that tells what went wrong), data-name-input (the id of the new passkey's
   name field) and data-codes (the id of the section that shows a first factor's recovery
   codes). Elements marked data-webauthn-only stay hidden unless this browser has WebAuthn. */
(function () {
  "use strict";
  var PKC = window.PublicKeyCredential;
  if (!PKC || !navigator.credentials || !window.fetch) {
    return;
  }

  function fromB64url(text) {
    var b64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i !== raw.length; i++) {
      out[i] = raw.charCodeAt(i);
    }
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i !== bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return Object.assign({}, d, { id: fromB64url(d.id) });
    });
  }

  function creationOptions(json) {
    if (typeof PKC.parseCreationOptionsFromJSON === "function") {
      return PKC.parseCreationOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      user: Object.assign({}, json.user, { id: fromB64url(json.user.id) }),
      excludeCredentials: descriptors(json.excludeCredentials)
    });
  }

  function requestOptions(json) {
    if (typeof PKC.parseRequestOptionsFromJSON === "function") {
      return PKC.parseRequestOptionsFromJSON(json);
    }
    return Object.assign({}, json, {
      challenge: fromB64url(json.challenge),
      allowCredentials: descriptors(json.allowCredentials)
    });
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    var r = credential.response;
    var response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    var out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults()
    };
    if (credential.authenticatorAttachment) {
      out.authenticatorAttachment = credential.authenticatorAttachment;
    }
    return out;
  }

  /* A path of this host, else "/" (the server checked it already; this is belt and braces). */
  function safePath(path) {
    var p = typeof path === "string" ? path : "";
    var second = p.charAt(1);
    return p.charAt(0) === "/" && second !== "/" && second !== "\\" ? p : "/";
  }

  function withNext(page, next) {
    return next === "/" ? page : page + "?next=" + encodeURIComponent(next);
  }

  function Refused(message, sessionEnded) {
    this.message = message;
    this.sessionEnded = !!sessionEnded;
  }

  function post(url, body, csrfToken) {
    var headers = { Accept: "application/json" };
    if (csrfToken) {
      headers["X-CSRF-Token"] = csrfToken;
    }
    var init = { method: "POST", credentials: "same-origin", cache: "no-store", headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json().catch(function () {
        return {};
      }).then(function (data) {
        if (!response.ok) {
          throw new Refused(
            data.detail || "Something went wrong (" + response.status + "). Try again.",
            data.session_ended
          );
        }
        return data;
      });
    });
  }

  function explain(error) {
    if (error instanceof Refused) {
      return error.message;
    }
    if (error && error.name === "NotAllowedError") {
      return "The passkey was not used: it was cancelled, or it took too long. Try again.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This passkey is registered already.";
    }
    return "The passkey did not work in this browser. Try again, or use another way.";
  }

  function byId(id) {
    return id ? document.getElementById(id) : null;
  }

  function say(button, message) {
    var alert = byId(button.getAttribute("data-error"));
    if (alert) {
      alert.textContent = message;
      alert.hidden = !message;
    }
  }

  function showCodes(button, codes, next) {
    var section = byId(button.getAttribute("data-codes"));
    if (!section) {
      window.location.assign(next);
      return;
    }
    var list = section.querySelector("[data-codes-list]");
    list.textContent = "";
    codes.forEach(function (code) {
      var item = document.createElement("li");
      var text = document.createElement("code");
      text.textContent = code;
      item.appendChild(text);
      list.appendChild(item);
    });
    section.querySelector("[data-codes-continue]").setAttribute("href", next);
    Array.prototype.forEach.call(document.querySelectorAll("[data-hide-with-codes]"), function (e) {
      e.hidden = true;
    });
    section.hidden = false;
    var heading = section.querySelector("h2");
    if (heading) {
      heading.focus();
    }
  }

  function afterStep(button, step, next) {
    if (step.recovery_codes && step.recovery_codes.length) {
      showCodes(button, step.recovery_codes, next);
    } else {
      window.location.assign(next);
    }
  }

  function register(button, next, csrfToken) {
    var nameField = byId(button.getAttribute("data-name-input"));
    var name = nameField ? nameField.value.trim().slice(0, 64) : "";
    return post("/api/v1/mfa/passkeys/options", undefined, csrfToken).then(function (begun) {
      return navigator.credentials
        .create({ publicKey: creationOptions(begun.options) })
        .then(function (credential) {
          var body = { challenge_id: begun.challenge_id, credential: credentialJSON(credential) };
          if (name) {
            body.name = name;
          }
          return post("/api/v1/mfa/passkeys", body, csrfToken);
        });
    }).then(function (step) {
      afterStep(button, step, next);
    });
  }

  function stepUp(button, next, csrfToken) {
    return post("/api/v1/mfa/passkeys/step-up/options", undefined, csrfToken).then(function (begun) {
      return navigator.credentials
        .get({ publicKey: requestOptions(begun.options) })
        .then(function (credential) {
          return post(
            "/api/v1/mfa/passkeys/step-up",
            { challenge_id: begun.challenge_id, credential: credentialJSON(credential), next: next },
            csrfToken
          );
        });
    }).then(function (step) {
      afterStep(button, step, next);
    });
  }

  function signIn(button, next) {
    return post("/api/v1/signin/passkey/options").then(function (begun) {
      return navigator.credentials
        .get({ publicKey: requestOptions(begun.options) })
        .then(function (credential) {
          return post("/api/v1/signin/passkey", {
            challenge_id: begun.challenge_id,
            credential: credentialJSON(credential),
            next: next
          });
        });
    }).then(function (done) {
      var to = safePath(done.next);
      window.location.assign(done.stage === "full" ? to : withNext("/signin/mfa", to));
    });
  }

  var CEREMONIES = { signin: signIn, register: register, "step-up": stepUp };

  function start(button) {
    var ceremony = CEREMONIES[button.getAttribute("data-webauthn")];
    var next = safePath(button.getAttribute("data-next"));
    if (!ceremony || button.disabled) {
      return;
    }
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    say(button, "");
    ceremony(button, next, button.getAttribute("data-csrf-token") || "")
      .catch(function (error) {
        if (error instanceof Refused && error.sessionEnded) {
          window.location.assign(withNext("/signin", next));
          return;
        }
        say(button, explain(error));
      })
      .then(function () {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-webauthn-only]"), function (e) {
    e.hidden = false;
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-webauthn-none]"), function (e) {
    e.hidden = true;
  });
  Array.prototype.forEach.call(document.querySelectorAll("button[data-webauthn]"), function (b) {
    b.addEventListener("click", function () {
      start(b);
    });
  });
})();
