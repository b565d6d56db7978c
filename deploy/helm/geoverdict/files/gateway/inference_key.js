// Keys for the gateway (nginx.conf): read on every request, so a rotated Secret or a restarted
// TorchServe's new key is used at once. Both files have TorchServe's key-file form,
// {"inference": {"key": "..."}}; the Secret may hold the bare key instead.
import fs from 'fs';
import crypto from 'crypto';

function inferenceKey(path) {
    let text;
    try {
        text = fs.readFileSync(path, 'utf8');
    } catch (e) {
        return '';  // not published yet
    }
    try {
        return String(JSON.parse(text).inference.key);
    } catch (e) {
        return text.trim();  // a Secret holding the bare key (inferenceKey.mode env)
    }
}

function digest(text) {
    return crypto.createHash('sha256').update(text).digest('hex');
}

// "1" when the request carries the Secret's key as a bearer token. Digests are compared so
// that the comparison's time says nothing about the key.
function client_authorized(r) {
    const expected = inferenceKey(r.variables.client_key_file);
    const header = r.headersIn.Authorization || '';
    if (!expected || !header.startsWith('Bearer ')) {
        return '0';
    }
    return digest(header.slice(7)) === digest(expected) ? '1' : '0';
}

function upstream_authorization(r) {
    return 'Bearer ' + inferenceKey(r.variables.local_key_file);
}

export default {client_authorized, upstream_authorization};
