// The Ollama gateway's logic in nginx njs (0.7): model routing that guards the plan, the fleet-wide
// views (/api/ps, /api/tags, /v1/models), health and Prometheus metrics. A static file: everything it
// knows about the fleet comes from fleet.json, which site.yml writes (ollama_gateway_fleet filter) and
// nginx names in $ollama_gateway_fleet.
import fs from 'fs';
import crypto from 'crypto';

// Options that make Ollama load the model again when they differ from the running one
// (server/sched.go needsReload): a client sending one would reload a pinned model.
// Bodies up to this size the router rewrites without what the plan guards; larger ones are refused.
const REWRITE_LIMIT = 1048576;

const RELOAD_OPTIONS = ['num_ctx', 'num_batch', 'num_gpu', 'main_gpu', 'use_mmap', 'num_thread', 'draft_num_predict'];

function fleet(r) {
    return JSON.parse(fs.readFileSync(r.variables.ollama_gateway_fleet));
}

// ------------------------------------------------------------------------------------ answers

function isOpenAI(r) {
    return r.uri.indexOf('/v1/') === 0;
}

function send(r, status, value) {
    r.headersOut['Content-Type'] = 'application/json; charset=utf-8';
    r.return(status, JSON.stringify(value) + '\n');
}

// Errors as Ollama words them: {"error": "..."} on /api, Anthropic's error object on /v1/messages
// (anthropic/anthropic.go NewError), OpenAI's on the rest of /v1 (openai/openai.go).
const ANTHROPIC_ERRORS = { 400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error',
    404: 'not_found_error', 429: 'rate_limit_error', 503: 'overloaded_error' };

function fail(r, status, message) {
    if (r.uri === '/v1/messages') {
        send(r, status, { type: 'error', error: { type: ANTHROPIC_ERRORS[status] || 'api_error', message: message } });
    } else if (isOpenAI(r)) {
        const kind = status === 404 ? 'not_found_error' : status >= 500 ? 'api_error' : 'invalid_request_error';
        send(r, status, { error: { message: message, type: kind, param: null, code: null } });
    } else {
        send(r, status, { error: message });
    }
}

// ------------------------------------------------------------------------------------ names

// Go's encoding/json matches a body's keys to the request struct case-insensitively, by Unicode simple
// folding: "Model" and "MODEL" are model, and so is "keep_alive" spelled with the Kelvin sign (U+212A) for k;
// "ſ" (U+017F) folds to s. Ollama decodes every request so (server/routes.go, c.ShouldBindJSON).
// Whether TEXT from START to END folds to FIELD (lower-case ASCII): compared in place, character by
// character, so that a body of many keys costs no string and no regex per key.
function foldsTo(text, start, end, field) {
    if (end - start !== field.length) {
        return false;
    }
    let c; // declared outside the loop: njs 0.7 keeps every iteration's let or const until the request ends
    for (let n = 0; n < field.length; n++) {
        c = text.charCodeAt(start + n);
        if (c === 0x212a) {
            c = 107; // k
        } else if (c === 0x17f) {
            c = 115; // s
        } else if (c >= 65 && c <= 90) {
            c += 32;
        }
        if (c !== field.charCodeAt(n)) {
            return false;
        }
    }
    return true;
}

function keysFolding(object, field) {
    return Object.keys(object).filter(function (k) { return foldsTo(k, 0, k.length, field); });
}

// types/model/name.go isValidPart: the first character [A-Za-z0-9_], then also - and _; "." except in the
// namespace, ":" only in the host; host up to 350 characters, the other parts up to 80.
// Ollama's rule for model names, as plugins/module_utils/model_names.py writes it for the Python side; one table
// of spellings (tests/model_names.json) checks both. Every part: ASCII letters, digits and '_' first, then '_',
// '-', '.' (not in a namespace), ':' (only in a host); 1-80 bytes, a host 1-350 (types/model/name.go isValidPart).
const NAME_PARTS = {
    host: /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$/,
    namespace: /^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$/,
    model: /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$/,
    tag: /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$/,
};
// Go's strings.TrimSpace (unicode.IsSpace), not String.prototype.trim: Go trims U+0085 and keeps U+FEFF
const GO_SPACE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+';
const GO_TRIM = new RegExp('^' + GO_SPACE + '|' + GO_SPACE + '$', 'g');

// internal/modelref parseSourceSuffix: [base, 'local' | 'cloud' | null]
function sourceSuffix(raw) {
    const at = raw.lastIndexOf(':');
    if (at < 0) {
        return [raw, null];
    }
    const suffix = raw.slice(at + 1).replace(GO_TRIM, '');
    const word = suffix.toLowerCase();
    if (word === 'cloud' || word === 'local') {
        return [raw.slice(0, at), word];
    }
    if (raw.slice(at + 1).indexOf('/') < 0 && /-cloud$/.test(word)) {
        return [raw.slice(0, at + 1) + suffix.slice(0, -6), 'cloud'];
    }
    return [raw, null];
}

// types/model/name.go cutPromised: split at the last SEP; an empty side is a part never valid
function cutLast(text, sep) {
    const at = text.lastIndexOf(sep);
    return at < 0 ? null : [text.slice(0, at) || '!MISSING!', text.slice(at + 1) || '!MISSING!'];
}

// A model's identity, its full name in lower case: [scheme://][host/][namespace/]model[:tag] with
// registry.ollama.ai, library and latest filled in (types/model/name.go ParseNameBare, Merge), after
// internal/modelref ParseRef trims spaces and a ":local" suffix. Lower case because Ollama finds a model
// whatever the case of each part (server/routes.go getExistingName, Name.EqualFold). null when Ollama would
// answer "invalid model name" (a digest "@sha256:..." included: v0.33 parses none) or would send the model
// on to ollama.com (":cloud", a "-cloud" tag, and both suffixes at once, which ParseRef refuses).
function canonical(name) {
    const ref = sourceSuffix(String(name).replace(GO_TRIM, ''));
    if (ref[1] === 'cloud' || (ref[1] && sourceSuffix(ref[0])[1])) {
        return null;
    }
    let rest = ref[0];
    const full = { host: 'registry.ollama.ai', namespace: 'library', tag: 'latest' };
    if (rest.lastIndexOf(':') > rest.lastIndexOf('/')) {
        const tagged = cutLast(rest, ':');
        rest = tagged[0];
        full.tag = tagged[1];
    }
    const model = cutLast(rest, '/');
    full.model = model ? model[1] : rest;
    const namespace = model && cutLast(model[0], '/');
    if (model) {
        full.namespace = namespace ? namespace[1] : model[0];
    }
    if (namespace) {
        const scheme = namespace[0].indexOf('://');
        full.host = scheme < 0 ? namespace[0] : namespace[0].slice(scheme + 3);
    }
    const bad = Object.keys(NAME_PARTS).filter(function (p) { return !NAME_PARTS[p].test(full[p]); });
    return bad.length ? null : (full.host + '/' + full.namespace + '/' + full.model + ':' + full.tag).toLowerCase();
}

// Pinned models by their full name: { model (the plan's name), upstream, context, affine (the upstream that
// keeps a conversation on one instance, or null) }.
function pinnedModels(f) {
    const pinned = {};
    Object.keys(f.routes).forEach(function (model) {
        pinned[canonical(model)] = { model: model, upstream: f.routes[model], context: f.contexts[model],
            affine: (f.affinity || {})[model] || null };
    });
    return pinned;
}

// ------------------------------------------------------------------------------------ routing

function readBody(r) {
    // the inference locations keep every body in a file (client_body_in_file_only): a large one never sits
    // in nginx's memory while it arrives, and njs 0.7 throws "request body is in a file" for r.requestText
    const file = r.variables.request_body_file;
    if (file) {
        return readFile(file);
    }
    return r.requestBuffer || Buffer.alloc(0);
}

// FILE's bytes in one Buffer read into in place (readFileSync holds a second copy of the body).
function readFile(file) {
    const fd = fs.openSync(file, 'r');
    try {
        const body = Buffer.alloc(fs.fstatSync(fd).size);
        let got = 0;
        while (got < body.length) {
            const n = fs.readSync(fd, body, got, body.length - got, got);
            if (n <= 0) {
                return body.slice(0, got);
            }
            got += n;
        }
        return body;
    } finally {
        fs.closeSync(fd);
    }
}

// ------------------------------------------------------------------------------------ a body read in bounds

// What one request may cost the router, whatever its body (docs/gateway.md, "What a request costs the gateway"):
// njs 0.7 frees nothing until the request ends, and JSON.parse takes 30 to 215 bytes of memory per value
// (a million small keys: 0.6 s and 250 MB; an empty array, the dearest, 215 bytes), so the router never parses
// a body as it came. Strings of more than LONG_STRING bytes (prompts, messages, images: what makes bodies
// large) stand in it as "", except the values of model, name and keep_alive, which the guard reads; what is
// left, the body's structure, is parsed when it is at most STRUCTURE_LIMIT bytes holding at most
// CONTAINER_LIMIT arrays and objects. Strings are jumped over with indexOf, a step per quote mark and per
// backslash before one: at most SCAN_LIMIT steps; the bytes between strings are walked one by one (at most
// STRUCTURE_LIMIT of them). Beyond any limit: 413.
const STRUCTURE_LIMIT = 1048576;
const CONTAINER_LIMIT = 65536;
const SCAN_LIMIT = 1048576;
const LONG_STRING = 64;
// Long strings the affinity key can read back, each left in the text as MARK and its number: a character a
// JSON string may hold as it is (no backslash: a mark does not send optionsAsGo down its slow path).
const MARKED = 64;
const MARK = 0xe000;
const MARK_TEXT = String.fromCharCode(MARK);

// Whether the key from START to END of BODY (bytes, no escapes) folds to FIELD as Go's encoding/json folds
// it: ASCII case, the Kelvin sign (U+212A, E2 84 AA in UTF-8) for k and the long s (U+017F, C5 BF) for s.
function keyBytesFold(body, start, end, field) {
    let i = start;
    let c;
    for (let n = 0; n < field.length; n++) {
        c = body[i];
        if (c === 0xe2 && body[i + 1] === 0x84 && body[i + 2] === 0xaa) {
            c = 107;
            i += 3;
        } else if (c === 0xc5 && body[i + 1] === 0xbf) {
            c = 115;
            i += 2;
        } else {
            c = c >= 65 && c <= 90 ? c + 32 : c;
            i += 1;
        }
        if (c !== field.charCodeAt(n)) {
            return false;
        }
    }
    return i === end;
}

// The guard reads these fields' string values whatever their length.
const READ_WHOLE = ['model', 'name', 'keep_alive'];

// Whether the key from START to END of BODY is one of READ_WHOLE: compared as bytes; a short key with an
// escape (\u006dodel is model) decoded first.
function readsWhole(body, start, end) {
    for (let n = 0; n < READ_WHOLE.length; n++) {
        if (keyBytesFold(body, start, end, READ_WHOLE[n])) {
            return true;
        }
    }
    if (end - start > 6 * 12) {
        return false; // longer than any of them written all in \u escapes
    }
    let i = start;
    while (i < end && body[i] !== 92) {
        i++;
    }
    if (i === end) {
        return false;
    }
    let key;
    try {
        key = JSON.parse(body.slice(start - 1, end + 1).toString());
    } catch (e) {
        return false; // not a JSON string: JSON.parse refuses the body
    }
    for (let n = 0; n < READ_WHOLE.length; n++) {
        if (foldsTo(key, 0, key.length, READ_WHOLE[n])) {
            return true;
        }
    }
    return false;
}

function isSpace(c) {
    return c === 32 || c === 10 || c === 13 || c === 9;
}

// The body's structure (BODY a Buffer): { text, cut (whether a long string was left out) }, or null when it
// is beyond the limits. What is left out is kept as numbers in a typed array (where each long string starts
// and ends) and the structure written once: a Buffer per left-out string would cost njs some 220 bytes each.
function structure(body) {
    let cuts = new Uint32Array(1024); // start and end of each left-out string, 4 bytes each
    let count = 0;
    let cutBytes = 0;
    let at = 0;
    let kept = 0;
    let steps = 0;
    let containers = 0;
    let afterKey = false;
    // every variable of the loops declared here: njs 0.7 keeps each iteration's let or const until the
    // request ends (about 17 bytes a declaration), which a million iterations would make megabytes
    let open, end, c, close, slashes, next, isKey, more;
    for (;;) {
        open = body.indexOf(34, at);
        end = open < 0 ? body.length : open;
        for (let i = at; i < end && kept <= STRUCTURE_LIMIT; i++) {
            c = body[i];
            if (c === 91 || c === 123) {
                containers++;
            }
            kept++;
        }
        if (open < 0 || kept > STRUCTURE_LIMIT || containers > CONTAINER_LIMIT) {
            break;
        }
        close = open;
        do {
            close = body.indexOf(34, close + 1);
            slashes = 0;
            while (close > 0 && body[close - 1 - slashes] === 92 && steps + slashes <= SCAN_LIMIT) {
                slashes++;
            }
            steps += 1 + slashes;
            if (slashes % 2 === 0) {
                break;
            }
        } while (close > 0);
        if (close < 0 || steps > SCAN_LIMIT) {
            break; // not ended: JSON.parse says so; too many steps: refused below
        }
        next = close + 1;
        while (isSpace(body[next]) && next - close <= STRUCTURE_LIMIT - kept) {
            next++;
        }
        isKey = body[next] === 58;
        if (!isKey && !afterKey && close - open > LONG_STRING) {
            if (count === cuts.length) {
                more = new Uint32Array(cuts.length * 2);
                more.set(cuts);
                cuts = more;
            }
            cuts[count++] = open + 1;
            cuts[count++] = close;
            cutBytes += close - open - 1;
        } else {
            kept += close + 1 - open;
        }
        afterKey = isKey && readsWhole(body, open + 1, close);
        at = close + 1;
    }
    if (kept > STRUCTURE_LIMIT || steps > SCAN_LIMIT || containers > CONTAINER_LIMIT) {
        return null;
    }
    if (!count) {
        return { text: body.toString(), cut: false, marks: cuts.subarray(0, 0), unmarked: false };
    }
    // the first MARKED strings left out are left as a mark (U+E000, as itself, and their number) that the
    // affinity key reads back from the body (affinityKey); the rest as ""
    const marks = Math.min(count, 2 * MARKED);
    let markBytes = 0;
    for (let n = 0; n < marks; n += 2) {
        markBytes += Buffer.byteLength(MARK_TEXT) + String(n / 2).length;
    }
    const text = Buffer.alloc(body.length - cutBytes + markBytes);
    let from = 0;
    let written = 0;
    for (let n = 0; n < count; n += 2) {
        written += body.copy(text, written, from, cuts[n]);
        if (n < marks) {
            written += Buffer.from(MARK_TEXT + n / 2).copy(text, written); // njs 0.7.9's Buffer.write writes a byte too many
        }
        from = cuts[n + 1];
    }
    body.copy(text, written, from);
    return { text: text.toString(), cut: true, marks: cuts.subarray(0, marks), unmarked: count > marks };
}

// The request BODY (a Buffer) holds as Ollama reads it, within the router's bounds: { request, cut }, or
// { status, error } to refuse it with.
function readRequest(body) {
    if (body.length === 0) {
        return { status: 400, error: 'missing request body' };
    }
    const read = structure(body);
    if (read === null) {
        return { status: 413, error: 'the request body holds more JSON than the gateway reads: at most '
            + STRUCTURE_LIMIT + ' bytes of keys, numbers and short strings (strings of over ' + LONG_STRING
            + ' bytes, such as prompts and images, do not count), ' + CONTAINER_LIMIT + ' arrays and objects, and '
            + SCAN_LIMIT + ' quote marks and backslashes before them' };
    }
    const decoded = decode(read.text, read.cut);
    decoded.marks = read.marks;
    decoded.unmarked = read.unmarked;
    return decoded;
}

// BODY read whole, every string in it: for a body the router rewrites (at most REWRITE_LIMIT bytes).
function readWhole(body) {
    return decode(body.toString(), false);
}

function decode(text, cut) {
    let request;
    try {
        request = JSON.parse(text);
    } catch (e) {
        return { status: 400, error: 'the gateway takes exactly one JSON object as the body: ' + e.message };
    }
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
        return { status: 400, error: 'the request body must be a JSON object' };
    }
    return { request: optionsAsGo(text, request), cut: cut };
}

// ------------------------------------------------------------------------------------ JSON as Go reads it

// JSON.parse keeps the last of two equal keys; Go's encoding/json decodes every one of them into the field, in
// the body's order, and a map field such as the request's options (map[string]any, api/types.go) keeps what
// the earlier objects put there: {"options":{"num_ctx":131072},"options":{"num_predict":1}} reaches Ollama
// with both. The router reads options as Go does before it guards them.

// A key that may fold to "options" (Go folds ſ to s), or a \u escape, with which any key might. Searched for
// twice at most: njs 0.7.9 runs a regex in about 6 ms per 10 MB (half of what indexOf takes), but each match
// costs it a walk from the start of the text, so a match-all over a body of many matches grows as its square.
const OPTIONS_KEY_OR_ESCAPE = /"[oO][pP][tT][iI][oO][nN][sS\u017f]"\s*:|\\u/g;

// Index just past the string token that starts at text[i].
function stringEnd(text, i) {
    let j = i;
    let slashes;
    for (;;) {
        j = text.indexOf('"', j + 1);
        slashes = 0;
        while (text.charCodeAt(j - 1 - slashes) === 92) {
            slashes++;
        }
        if (slashes % 2 === 0) {
            return j + 1;
        }
    }
}

function skipSpace(text, i) {
    while (isSpace(text.charCodeAt(i))) {
        i++;
    }
    return i;
}

// Index just past the JSON value that starts at text[i]: strings are jumped over with indexOf, the rest is
// walked a character at a time (njs runs a regex from a lastIndex in time that grows with the text).
function valueEnd(text, i) {
    const c = text.charCodeAt(i);
    if (c === 34) {
        return stringEnd(text, i);
    }
    let j = i;
    if (c !== 123 && c !== 91) {
        // a number, true, false or null: up to , } ] or white space
        for (let d = c; j < text.length && d !== 44 && d !== 125 && d !== 93 && !isSpace(d); d = text.charCodeAt(++j)) {
            // nothing but the walk
        }
        return j;
    }
    let d;
    for (let depth = 0; ; j++) {
        d = text.charCodeAt(j);
        if (d === 34) {
            j = stringEnd(text, j) - 1;
        } else if (d === 123 || d === 91) {
            depth++;
        } else if ((d === 125 || d === 93) && --depth === 0) {
            return j + 1;
        }
    }
}

// The raw values of the top-level members whose key folds to FIELD, in the body's order. TEXT is one JSON
// object that JSON.parse has read. Only a key with an escape is decoded: a body of a million keys costs no
// string per key.
function membersFolding(text, field) {
    const values = [];
    let slash = text.indexOf('\\');
    let i = skipSpace(text, 0) + 1;
    let keyEnd, escaped, start, end, key; // outside the loop (see foldsTo)
    for (;;) {
        i = skipSpace(text, i);
        if (text.charCodeAt(i) === 44) {
            i = skipSpace(text, i + 1);
        }
        if (text.charCodeAt(i) !== 34) {
            return values;
        }
        keyEnd = stringEnd(text, i);
        while (slash >= 0 && slash < i) {
            slash = text.indexOf('\\', slash + 1);
        }
        escaped = slash >= 0 && slash < keyEnd;
        start = skipSpace(text, skipSpace(text, keyEnd) + 1);
        end = valueEnd(text, start);
        key = escaped ? JSON.parse(text.slice(i, keyEnd)) : text;
        if (escaped ? foldsTo(key, 0, key.length, field) : foldsTo(text, i + 1, keyEnd - 1, field)) {
            values.push(text.slice(start, end));
        }
        i = end;
    }
}

// REQUEST (JSON.parse of TEXT) with its options as Go decodes them: every member that folds to "options"
// merged in order into one map (an object adds its keys, a later one wins; null empties it), under the one
// key "options". Options of another type are left as they are: Ollama refuses such a request.
function optionsAsGo(text, request) {
    OPTIONS_KEY_OR_ESCAPE.lastIndex = 0;
    const first = OPTIONS_KEY_OR_ESCAPE.exec(text);
    if (first === null || first[0] !== '\\u' && OPTIONS_KEY_OR_ESCAPE.exec(text) === null) {
        return request; // options given once at most and nothing escaped: JSON.parse read what Go reads
    }
    const values = membersFolding(text, 'options').map(function (raw) { return JSON.parse(raw); });
    if (values.length < 2 || values.some(function (v) { return v !== null && (typeof v !== 'object' || Array.isArray(v)); })) {
        return request;
    }
    keysFolding(request, 'options').forEach(function (k) { delete request[k]; });
    // keys copied one by one into a map without a prototype: "__proto__" stays an option, as in Go's map
    request.options = values.reduce(function (map, v) {
        if (v === null) {
            return null;
        }
        const merged = map || Object.create(null);
        Object.keys(v).forEach(function (k) { merged[k] = v[k]; });
        return merged;
    }, null);
    return request;
}

// ------------------------------------------------------------------------------------ the plan guarded

// What a client without an admin key may not change on a pinned model: its keep-alive (unload, expiry) and
// the options that reload it. Over-long contexts follow ollama_gateway_context_policy. Returns the notes
// (what was dropped) or a string: the reason to refuse.
function guard(request, pinned, policy) {
    const notes = [];
    // keep_alive unloads or sets an expiry; shift (context shift) differing from the runner's reloads it
    ['keep_alive', 'shift'].forEach(function (field) {
        keysFolding(request, field).forEach(function (k) {
            delete request[k];
            notes.push(field);
        });
    });
    const optionKeys = keysFolding(request, 'options');
    if (optionKeys.length > 1) {
        return 'the body gives options more than once (' + optionKeys.join(', ') + ')';
    }
    const options = optionKeys.length ? request[optionKeys[0]] : null;
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        return notes;
    }
    const wanted = options.num_ctx;
    if (typeof wanted === 'number' && pinned.context && wanted > pinned.context && policy === 'reject') {
        return 'options.num_ctx ' + wanted + ' is more than model ' + pinned.model + ' runs with on this fleet ('
            + pinned.context + '); ask for at most ' + pinned.context + ' or leave num_ctx out';
    }
    // num_ctx goes even when it is a planned context: instances of one model may plan different ones
    RELOAD_OPTIONS.forEach(function (o) {
        if (o in options) {
            delete options[o];
            notes.push('options.' + o);
        }
    });
    return notes;
}

// A body up to this size goes to the instance from memory, with the request's head in one write: sent from
// its file (client_body_in_file_only), it left in a second packet that waited, on a kept-alive connection to
// the instance, for the delayed acknowledgement of the first (40 ms on every request).
const FROM_MEMORY = 65536;

// To UPSTREAM: the body as the client sent it (SENT, a Buffer; null for a form, which goes from its file) or
// BODY, the one the router wrote, with NOTES (what it dropped). AFFINE: { upstream, key } (affinity) to go
// through the model's affine upstream first, UPSTREAM taking what it cannot place; or null.
function proxy(r, upstream, sent, body, notes, affine) {
    if (body === null && sent !== null && sent.length <= FROM_MEMORY) {
        const text = sent.toString();
        body = Buffer.byteLength(text) === sent.length ? text : null; // bytes that are not UTF-8 stay in the file
    }
    r.variables.ollama_gateway_upstream = upstream;
    r.variables.ollama_gateway_guarded = notes.filter(function (n, i) { return notes.indexOf(n) === i; }).join(', ');
    let location = '@ollama_routed';
    if (affine) {
        r.variables.ollama_gateway_affine = affine.upstream;
        r.variables.ollama_gateway_affinity = affine.key;
        r.variables.ollama_gateway_affinity_route = affine.key ? 'affine' : 'balanced';
        location = '@ollama_affine';
    }
    if (body === null) {
        r.internalRedirect(location);
    } else {
        r.variables.ollama_gateway_body = body;
        r.internalRedirect(location + '_rewritten');
    }
}

// ------------------------------------------------------------------------------------ affinity

// Ollama's runners keep each slot's prompt and evaluate only what follows the longest cached prefix (llama-server
// under Ollama 0.33, llm/llama_server.go cache_prompt): a conversation's next turn is cheap only where its last
// one ran. A conversation is known by what its turns share from the start: the messages up to its first user
// message, the start of a prompt (PROMPT_KEY_BYTES), the start of a `context` (the tokens /api/generate
// returned), or the key a client names (OpenAI's prompt_cache_key). Neither official client sends an id.
const AFFINITY_ENDPOINTS = ['/api/chat', '/api/generate', '/v1/chat/completions', '/v1/completions'];
const PROMPT_KEY_BYTES = 256;
const CONTEXT_KEY_TOKENS = 64;
const STRING_KEY_BYTES = 65536;
// what one key may read in all: a body of many messages before its first user message costs no more
const KEY_BYTES = 1048576;

// The key's reading of REQUEST's strings: long ones (left out by structure, marked) from their bytes in BODY,
// each mark once (a client's own copy of a mark is its text), KEY_BYTES in all; null once over.
function keyReader(marks, body) {
    const used = {};
    let budget = KEY_BYTES;
    return function (value, limit) {
        if (typeof value !== 'string') {
            return '';
        }
        let text = value;
        const n = value.charCodeAt(0) === MARK && /^\ue000[0-9]+$/.test(value) ? 2 * Number(value.slice(1)) : -1;
        if (n >= 0 && n < marks.length && !used[n]) {
            used[n] = true;
            text = body.slice(marks[n], Math.min(marks[n + 1], marks[n] + limit));
        } else if (value.length > limit) {
            text = value.slice(0, limit);
        }
        budget -= text.length;
        return budget < 0 ? null : text;
    };
}

// The conversation's key for REQUEST (as structure read it: MARKS its marked strings in BODY, UNMARKED whether
// it left out more than it marked), or '' when it has none to go by. Never throws: a body the key cannot read
// is balanced without one.
function affinityKey(r, request, marks, body, unmarked) {
    try {
        const read = keyReader(marks, body);
        const hash = crypto.createHash('sha1');
        // a part of the key: '' that may be a long string left out unmarked says nothing, nor does one over budget
        const add = function (text) {
            if (text === null || (text === '' && unmarked)) {
                throw new Error('unreadable');
            }
            hash.update(text).update('\u0000');
        };
        const own = request.prompt_cache_key;
        if (typeof own === 'string' && own !== '' && isOpenAI(r)) {
            add('key');
            add(read(own, STRING_KEY_BYTES));
        } else if (Array.isArray(request.messages) && request.messages.length) {
            const messages = request.messages;
            let m, parts;
            for (let n = 0; n < messages.length; n++) {
                m = messages[n] !== null && typeof messages[n] === 'object' ? messages[n] : {};
                add(typeof m.role === 'string' ? m.role : '?');
                if (Array.isArray(m.content)) {
                    parts = m.content;
                    for (let k = 0; k < parts.length; k++) {
                        if (parts[k] !== null && typeof parts[k] === 'object' && typeof parts[k].text === 'string') {
                            add(read(parts[k].text, STRING_KEY_BYTES));
                        }
                    }
                } else {
                    add(read(m.content, STRING_KEY_BYTES));
                }
                if (m.role === 'user') {
                    break;
                }
            }
        } else if (Array.isArray(request.context) && request.context.length && r.uri === '/api/generate') {
            add('context');
            add(request.context.slice(0, CONTEXT_KEY_TOKENS).map(function (t) {
                return typeof t === 'number' ? String(t) : '?';
            }).join(','));
        } else {
            const prompt = Array.isArray(request.prompt) ? request.prompt[0] : request.prompt;
            if (typeof prompt !== 'string' || prompt === '') {
                return '';
            }
            add('prompt');
            hash.update(read(request.system, STRING_KEY_BYTES) || '').update('\u0000');
            add(read(prompt, PROMPT_KEY_BYTES));
        }
        return hash.digest('hex');
    } catch (e) {
        return '';
    }
}

// Where a request for a model pinned on several instances goes: { upstream (the model's affine one), key }, or
// null for other models. Every such request goes through that upstream, so that its slots are counted in one
// place (max_conns): those of a conversation by their key, the rest (other endpoints, no key to go by, the
// client's X-Ollama-Affinity: off) with an empty key, which nginx balances by round robin over free slots.
function affinity(r, pinned, request, read, body) {
    if (!pinned || !pinned.affine) {
        return null;
    }
    const wanted = AFFINITY_ENDPOINTS.indexOf(r.uri) >= 0
        && (r.headersIn['X-Ollama-Affinity'] || '').toLowerCase() !== 'off';
    return { upstream: pinned.affine, key: wanted ? affinityKey(r, request, read.marks, body, read.unmarked) : '' };
}

// Where a request for MODEL (as the client spelled it) goes: {upstream, pinned (null for on-demand instances)},
// or null once the refusal is sent.
function target(r, f, model) {
    if (typeof model !== 'string' || model === '') {
        fail(r, 400, 'model is required');
        return null;
    }
    const name = canonical(model);
    if (name === null) {
        fail(r, 400, 'invalid model name "' + model + '" (cloud models are not served by this gateway)');
        return null;
    }
    const pinned = pinnedModels(f)[name];
    if (pinned) {
        r.variables.ollama_gateway_model = pinned.model;
        r.variables.ollama_gateway_pinned = 'pinned';
        return { upstream: pinned.upstream, pinned: pinned };
    }
    if (f.unpinned === 'reject') {
        fail(r, 404, 'model "' + model + '" not found: this gateway serves ' + Object.keys(f.routes).sort().join(', '));
        return null;
    }
    // on demand: a name only the instance can judge (a made-up one answers 404 there), logged as routed
    r.variables.ollama_gateway_model = name;
    return { upstream: f.unpinned, pinned: null };
}

const FORM_PARTS = 64;

// The first form field named NAME of a multipart/form-data body, as Go's Request.FormValue reads it (the
// body's fields before the URL's query); null without one. The body is searched as bytes (an audio file
// may be most of it), only the field's own value decoded.
function formField(r, name) {
    const type = r.headersIn['Content-Type'] || '';
    const boundary = /^multipart\/form-data\s*;.*\bboundary=(?:"([^"]+)"|([^;\s]+))/i.exec(type);
    const file = r.variables.request_body_file;
    if (!boundary || !file) {
        return null;
    }
    const body = readFile(file);
    const delimiter = '--' + (boundary[1] || boundary[2]);
    const disposition = new RegExp('^content-disposition:\\s*form-data\\s*;(.*;)?\\s*name="?' + name + '"?\\s*(;|$)', 'im');
    const between = '\r\n' + delimiter;
    let at = body.indexOf(delimiter);
    let head, next; // outside the loop (see foldsTo)
    // the parts before the model field, at most FORM_PARTS of them: each costs the request some memory
    for (let part = 0; at >= 0 && part < FORM_PARTS; part++) {
        head = body.indexOf('\r\n\r\n', at);
        next = head < 0 ? -1 : body.indexOf(between, head);
        if (next < 0) {
            return null;
        }
        if (disposition.test(body.slice(at, head).toString())) {
            return body.slice(head + 4, next).toString();
        }
        at = next + 2;
    }
    return null;
}

// Inference and /api/show: to the instances that pin the model named in the body, the plan guarded.
function route(r) {
    const f = fleet(r);
    // a multipart form (middleware/openai.go TranscriptionMiddleware): its model field, else the URL's
    if (r.uri === '/v1/audio/transcriptions') {
        const to = target(r, f, formField(r, 'model') || r.args.model || '');
        return to ? proxy(r, to.upstream, null, null, [], null) : undefined;
    }
    const body = readBody(r);
    let read = readRequest(body);
    if (read.error) {
        return fail(r, read.status, read.error);
    }
    let request = read.request;
    // /api/show takes the deprecated "name" when "model" is empty (server/routes.go ShowHandler)
    const fields = r.uri === '/api/show' ? ['model', 'name'] : ['model'];
    let model = '';
    for (let n = 0; n < fields.length && !model; n++) {
        const keys = keysFolding(request, fields[n]);
        if (keys.length > 1) {
            return fail(r, 400, 'the body names the model more than once (' + keys.join(', ') + ')');
        }
        model = keys.length ? request[keys[0]] : '';
    }
    const to = target(r, f, model);
    if (!to) {
        return;
    }
    const pinned = to.pinned;
    const affine = affinity(r, pinned, request, read, body);
    // on-demand instances pin nothing to guard; OpenAI's and Anthropic's endpoints drop keep_alive and options
    // before Ollama sees them (middleware/openai.go, anthropic.go)
    if (!pinned || r.uri === '/api/show' || isOpenAI(r) || r.variables.ollama_gateway_admin === '1') {
        return proxy(r, to.upstream, body, null, [], affine);
    }
    let notes = guard(request, pinned, f.context_policy);
    if (typeof notes === 'string') {
        return fail(r, 400, notes);
    }
    // Writing a large body again would stall this worker (njs's JSON.stringify of megabytes of numbers
    // takes seconds) and hold a second copy: such a client is told what to leave out instead.
    if (notes.length && body.length > REWRITE_LIMIT) {
        return fail(r, 400, 'this gateway does not let clients change ' + notes.join(', ') + ' of pinned model '
            + pinned.model + '; leave them out (bodies over ' + REWRITE_LIMIT + ' bytes are not rewritten)');
    }
    if (notes.length && read.cut) {
        // rewritten whole: every string as the client sent it (at most REWRITE_LIMIT bytes read)
        read = readWhole(body);
        if (read.error) {
            return fail(r, read.status, read.error);
        }
        request = read.request;
        notes = guard(request, pinned, f.context_policy);
    }
    proxy(r, pinned.upstream, body, notes.length ? JSON.stringify(request) : null, notes, affine);
}

// ------------------------------------------------------------------------------------ fleet views

function fetchJSON(i, path) {
    return ngx.fetch('http://' + i.address + ':' + i.port + path)
        .then(function (res) { return res.ok ? res.json() : null; })
        .catch(function () { return null; });
}

// One store per host: the first of its instances that answers.
async function storeOf(instances) {
    for (let n = 0; n < instances.length; n++) {
        const answer = await fetchJSON(instances[n], '/api/tags');
        if (answer) {
            return answer;
        }
    }
    return null;
}

function missingHeader(r, missing) {
    if (missing.length) {
        r.headersOut['X-Ollama-Gateway-Missing'] = missing.join(', ');
    }
}

// Every model of every host's store, once, with the hosts that have it ("ollama_fleet", which Ollama's
// clients ignore), sorted by name so that every call gives the same list.
async function fleetModels(f) {
    const hosts = {};
    f.instances.forEach(function (i) { (hosts[i.host] = hosts[i.host] || []).push(i); });
    const names = Object.keys(hosts).sort();
    const stores = await Promise.all(names.map(function (h) { return storeOf(hosts[h]); }));
    const byName = {};
    const missing = [];
    names.forEach(function (host, n) {
        if (!stores[n]) {
            missing.push(host);
            return;
        }
        (stores[n].models || []).forEach(function (m) {
            const key = canonical(m.name) || m.name;
            if (!byName[key]) {
                byName[key] = Object.assign(m, { ollama_fleet: { hosts: [] } });
            }
            byName[key].ollama_fleet.hosts.push(host);
        });
    });
    const models = Object.keys(byName).sort().map(function (k) { return byName[k]; });
    return { models: models, missing: missing };
}

async function tags(r) {
    const listed = await fleetModels(fleet(r));
    missingHeader(r, listed.missing);
    send(r, 200, { models: listed.models });
}

// Every loaded model of every instance, with its host, instance and GPU UUIDs.
async function ps(r) {
    const f = fleet(r);
    const answers = await Promise.all(f.instances.map(function (i) { return fetchJSON(i, '/api/ps'); }));
    const models = [];
    const missing = [];
    f.instances.forEach(function (i, n) {
        if (!answers[n]) {
            missing.push(i.host + '/' + i.instance);
            return;
        }
        (answers[n].models || []).forEach(function (m) {
            m.ollama_fleet = { host: i.host, instance: i.instance, gpus: i.gpus.map(function (g) { return g.uuid; }) };
            models.push(m);
        });
    });
    const order = function (m) { return [m.ollama_fleet.host, m.ollama_fleet.instance, m.name].join('\u0000'); };
    models.sort(function (a, b) { return order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0; });
    missingHeader(r, missing);
    send(r, 200, { models: models });
}

// Seconds since 1970 of an RFC 3339 time as Go writes it (nanoseconds, an offset), which njs's Date.parse
// does not take; 0 when it is not one.
function unixSeconds(stamp) {
    const t = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|([+-])(\d\d):(\d\d))$/.exec(String(stamp));
    if (!t) {
        return 0;
    }
    const offset = t[7] === 'Z' ? 0 : (t[8] === '-' ? -1 : 1) * (Number(t[9]) * 60 + Number(t[10])) * 60;
    return Date.UTC(Number(t[1]), Number(t[2]) - 1, Number(t[3]), Number(t[4]), Number(t[5]), Number(t[6])) / 1000 - offset;
}

// OpenAI's model object as Ollama builds it (openai/openai.go ToModel, ToListCompletion).
function openAIModel(m) {
    const parts = m.name.split('/');
    return {
        id: m.name,
        object: 'model',
        created: unixSeconds(m.modified_at),
        owned_by: parts.length > 1 ? parts[parts.length - 2] : 'library',
    };
}

async function v1Models(r) {
    const listed = await fleetModels(fleet(r));
    missingHeader(r, listed.missing);
    const prefix = '/v1/models/';
    if (r.uri.indexOf(prefix) !== 0) {
        return send(r, 200, { object: 'list', data: listed.models.map(openAIModel) });
    }
    const wanted = r.uri.slice(prefix.length);
    const key = canonical(wanted);
    const found = listed.models.filter(function (m) { return key !== null && canonical(m.name) === key; });
    if (!found.length) {
        return fail(r, 404, 'model "' + wanted + '" not found');
    }
    send(r, 200, openAIModel(found[0]));
}

// ------------------------------------------------------------------------------------ health

// Whether each instance is up, as fleet.json's "up" defines it for the health checker too: its path answers 200
// within the timeout (js_fetch_timeout, rendered from the same setting).
async function instancesUp(f) {
    return Promise.all(f.instances.map(function (i) {
        return ngx.fetch('http://' + i.address + ':' + i.port + f.up.path)
            .then(function (res) { return res.status === 200; }, function () { return false; });
    }));
}

// Public: up or down, nothing about the fleet's layout.
async function healthz(r) {
    const states = await instancesUp(fleet(r));
    const up = states.some(function (s) { return s; });
    send(r, up ? 200 : 503, { status: up ? 'up' : 'down' });
}

// Status listener only: every instance with its address.
async function healthzDetail(r) {
    const f = fleet(r);
    const states = await instancesUp(f);
    const up = states.filter(function (s) { return s; }).length;
    send(r, up > 0 ? 200 : 503, {
        up: up,
        total: f.instances.length,
        instances: f.instances.map(function (i, n) {
            return { host: i.host, instance: i.instance, address: i.address, port: i.port, up: states[n] };
        }),
    });
}

// ------------------------------------------------------------------------------------ measuring

// What an answer cost, read from its end, where Ollama puts it: the final object's prompt_eval_count,
// eval_count and durations (server/routes.go); the OpenAI-compatible usage (openai/openai.go ToUsage; in a
// stream only when the client asked for stream_options.include_usage, middleware/openai.go); input_tokens and
// output_tokens of /v1/messages (anthropic/anthropic.go: the response, a stream's message_delta) and
// /v1/responses (openai/responses.go). A body
// filter (js_body_filter in the routed locations): every buffer goes on to the client first, unchanged; the
// filter keeps references to the last ones (no copy) until they hold TAIL bytes and reads them once, at the
// end. Answer text cannot forge a count: inside a JSON string a quote is escaped (\"eval_count\").
const TAIL = 4096;
const COUNTS = /"(prompt_eval_count|prompt_tokens|input_tokens|eval_count|completion_tokens|output_tokens|total_duration|load_duration|prompt_eval_duration|eval_duration)":(\d+)/g;
let tail = [];
let tailBytes = 0;

function lastCounts(text) {
    const found = {};
    let m;
    COUNTS.lastIndex = 0;
    while ((m = COUNTS.exec(text)) !== null) {
        found[m[1]] = Number(m[2]);
    }
    return found;
}

// seconds, as nginx writes its times
function seconds(ns) {
    return (Math.max(0, ns) / 1e9).toFixed(3);
}

function measure(r, data, flags) {
    r.sendBuffer(data, flags);
    if (data.length) {
        tail.push(data);
        tailBytes += data.length;
        while (tailBytes - tail[0].length >= TAIL) {
            tailBytes -= tail.shift().length;
        }
    }
    if (!flags.last || r.status !== 200 || tail.length === 0) {
        return;
    }
    const c = lastCounts(Buffer.concat(tail).toString());
    tail = [];
    const prompt = ['prompt_eval_count', 'prompt_tokens', 'input_tokens'].map(function (k) { return c[k]; })
        .find(function (v) { return v !== undefined; });
    const completion = ['eval_count', 'completion_tokens', 'output_tokens'].map(function (k) { return c[k]; })
        .find(function (v) { return v !== undefined; });
    if (prompt !== undefined) {
        r.variables.ollama_gateway_prompt_tokens = String(prompt);
    }
    if (completion !== undefined) {
        r.variables.ollama_gateway_completion_tokens = String(completion);
    }
    // Ollama's total runs from the request's arrival; what neither loading nor evaluating took, it waited for
    // one of the model's slots (OLLAMA_NUM_PARALLEL: llm/llama_server.go, s.sem.Acquire). Native API only.
    if (['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'].every(function (k) { return k in c; })) {
        r.variables.ollama_gateway_slot_wait = seconds(c.total_duration - c.load_duration - c.prompt_eval_duration - c.eval_duration);
    }
}

// ------------------------------------------------------------------------------------ metrics

// Prometheus text format. Labels: host and ollama_instance are the plan's names ("instance" is
// Prometheus's own target label); gpu_uuid joins with a GPU exporter's per-GPU series.
function esc(value) {
    return String(value).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(pairs) {
    return '{' + Object.keys(pairs).map(function (k) { return k + '="' + esc(pairs[k]) + '"'; }).join(',') + '}';
}

function drainMarks(dir) {
    try {
        return fs.readdirSync(dir).filter(function (m) { return m.indexOf('@') > 0; });
    } catch (e) {
        return [];
    }
}

function family(out, name, type, help) {
    out.push('# HELP ' + name + ' ' + help, '# TYPE ' + name + ' ' + type);
}

function who(i, more) {
    return Object.assign({ host: i.host, ollama_instance: i.instance }, more || {});
}

// nginx's stub_status, under the names nginx-prometheus-exporter uses
const STUB_FAMILIES = [
    ['nginx_connections_active', 'gauge', 'Active client connections.'],
    ['nginx_connections_accepted', 'counter', 'Accepted client connections.'],
    ['nginx_connections_handled', 'counter', 'Handled client connections.'],
    ['nginx_http_requests_total', 'counter', 'Total http requests.'],
    ['nginx_connections_reading', 'gauge', 'Connections where nginx is reading the request header.'],
    ['nginx_connections_writing', 'gauge', 'Connections where nginx is writing the response back to the client.'],
    ['nginx_connections_waiting', 'gauge', 'Idle client connections.'],
];

// What each request cost, read from the request log by mtail (ollama-gateway-requests.service), which serves them
// on loopback: these families only, with their help (mtail's says where the program defines them), never mtail's
// own series. Their labels are the request log's, which the gateway bounds.
const REQUEST_FAMILIES = {
    ollama_gateway_requests_total: 'Requests, by key name, endpoint, status, and the model and instance that answered.',
    ollama_gateway_time_to_first_token_seconds: "Seconds to a stream's first token (the instance's response head).",
    ollama_gateway_request_duration_seconds: "Seconds from the request's first byte to the answer's last.",
    ollama_gateway_slot_wait_seconds: "Seconds the instance held a request before one of the model's slots took it (native API).",
    ollama_prompt_eval_total: "Prompt tokens evaluated (prompt_eval_count; OpenAI's prompt_tokens), by key.",
    ollama_eval_total: "Tokens generated (eval_count; OpenAI's completion_tokens), by key.",
};

function requestFamilies(out, text) {
    text.split('\n').forEach(function (line) {
        const words = line.split(' ');
        if (words[0] === '#') {
            if (words[1] === 'HELP' && REQUEST_FAMILIES[words[2]]) {
                out.push('# HELP ' + words[2] + ' ' + REQUEST_FAMILIES[words[2]]);
            } else if (words[1] === 'TYPE' && REQUEST_FAMILIES[words[2]]) {
                out.push(line);
            }
            return;
        }
        const name = (line.match(/^[a-z_]+/) || [''])[0];
        if (REQUEST_FAMILIES[name] || REQUEST_FAMILIES[name.replace(/_(bucket|sum|count)$/, '')]) {
            out.push(line);
        }
    });
}

function exposition(f, up, answers, stub, marks, requests) {
    const out = [];
    const instances = f.instances;
    if (f.gateway) {
        // scraped through the gateways' shared address, it names the gateway holding it
        family(out, 'ollama_gateway_info', 'gauge', 'This gateway, by its inventory name (label gateway).');
        out.push('ollama_gateway_info' + labels({ gateway: f.gateway }) + ' 1');
    }
    if (f.request_limit) {
        family(out, 'ollama_gateway_request_limit', 'gauge', 'Requests the gateway admits at once: every slot plus its queue (beyond it: 503).');
        out.push('ollama_gateway_request_limit ' + f.request_limit);
    }
    family(out, 'ollama_gateway_instance_up', 'gauge', 'Whether the instance is up (1: it answered ' + f.up.path + ' in ' + f.up.timeout + ' s) or not (0).');
    instances.forEach(function (i, n) {
        out.push('ollama_gateway_instance_up' + labels(who(i, { target: i.address + ':' + i.port })) + ' ' + (up[n] ? 1 : 0));
    });
    family(out, 'ollama_gateway_instance_slots', 'gauge', 'Requests the gateway sends the instance at once (OLLAMA_NUM_PARALLEL).');
    instances.forEach(function (i) { out.push('ollama_gateway_instance_slots' + labels(who(i)) + ' ' + i.max_conns); });
    family(out, 'ollama_gateway_instance_drained', 'gauge', 'Instances held out of rotation, by reason (restart, health, manual).');
    instances.forEach(function (i) {
        marks.filter(function (m) { return m.split('@')[0] === i.address + ':' + i.port; }).forEach(function (m) {
            out.push('ollama_gateway_instance_drained' + labels(who(i, { reason: m.split('@')[1] })) + ' 1');
        });
    });
    family(out, 'ollama_instance_gpu_info', 'gauge', 'GPUs of each instance (join with a GPU exporter on gpu_uuid).');
    instances.forEach(function (i) {
        i.gpus.forEach(function (g) {
            out.push('ollama_instance_gpu_info' + labels(who(i, { gpu_index: g.index, gpu_uuid: g.uuid })) + ' 1');
        });
    });
    [['ollama_instance_model_bytes', 'size', 'Memory of each loaded model (/api/ps size).'],
     ['ollama_instance_model_vram_bytes', 'size_vram', 'Part of it in VRAM (/api/ps size_vram); less than size means CPU spill.']]
        .forEach(function (fam) {
            family(out, fam[0], 'gauge', fam[2]);
            instances.forEach(function (i, n) {
                ((answers[n] || {}).models || []).forEach(function (m) {
                    out.push(fam[0] + labels(who(i, { model: m.name })) + ' ' + m[fam[1]]);
                });
            });
        });
    const counts = stub.match(/\d+/g) || [];
    if (counts.length === STUB_FAMILIES.length) {
        STUB_FAMILIES.forEach(function (fam, n) {
            family(out, fam[0], fam[1], fam[2]);
            out.push(fam[0] + ' ' + counts[n]);
        });
    }
    requestFamilies(out, requests);
    return out.join('\n') + '\n';
}

async function metrics(r) {
    const f = fleet(r);
    const states = await instancesUp(f);
    const answers = await Promise.all(f.instances.map(function (i) { return fetchJSON(i, '/api/ps'); }));
    const text = function (url) {
        return url ? ngx.fetch(url).then(function (res) { return res.ok ? res.text() : ''; }, function () { return ''; }) : '';
    };
    const stub = await text(f.stub_status);
    const requests = await text(f.request_metrics);
    r.headersOut['Content-Type'] = 'text/plain; version=0.0.4; charset=utf-8';
    r.return(200, exposition(f, states, answers, stub, drainMarks(f.drained_dir), requests));
}

export default { route, measure, tags, ps, v1Models, healthz, healthzDetail, metrics, canonical, guard, optionsAsGo, formField, readRequest, readWhole, affinity };
