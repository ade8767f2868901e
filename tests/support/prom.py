"""A strict parser of the Prometheus text exposition format (0.0.4), for tests of METRICS_PORT.

    m = prom.parse(text)                       # raises prom.FormatError on anything off-spec
    m.value("edgegate_api_calls_total", endpoint="config", outcome="2xx")   # one series
    m.total("edgegate_api_calls_total", outcome="2xx")   # sum over the series that match
    m.families["process_open_fds"].type                  # "gauge"

Strict means: every line is a HELP, a TYPE or a sample (no blank lines); a family's TYPE comes
before its samples, at most one HELP and TYPE each; the samples of a family are contiguous;
metric and label names are valid; label values use only the three escapes; no series appears
twice; counters are >= 0; histogram buckets have increasing `le` ending at +Inf, cumulative
counts that never decrease, and `_count` equal to the +Inf bucket; the text ends in a newline.
"""
import math
import re

NAME_RX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RX = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(ValueError):
    pass


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample name, {label: value}, float)


class Metrics:
    def __init__(self):
        self.families = {}

    def series(self, name, **labels):
        """Samples named `name` whose labels include `labels`: [(labels, value)]."""
        out = []
        for fam in self.families.values():
            for sname, slabels, v in fam.samples:
                if sname == name and all(slabels.get(k) == str(val) for k, val in labels.items()):
                    out.append((slabels, v))
        return out

    def value(self, name, **labels):
        """The value of the one series named `name` with exactly these labels (0 if absent)."""
        found = [v for sl, v in self.series(name, **labels) if len(sl) == len(labels)]
        if len(found) > 1:
            raise KeyError(f"{name} {labels}: {len(found)} series")
        return found[0] if found else 0.0

    def total(self, name, **labels):
        return sum(v for _, v in self.series(name, **labels))

    def has(self, name):
        return bool(self.series(name))


def _value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"{where}: bad value {text!r}") from None


def _labels(s, i, where):
    """Parses `{a="x",b="y"}` starting at s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise FormatError(f"{where}: bad label name at {s[i:i + 20]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError(f"{where}: expected =\" after label {name}")
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise FormatError(f"{where}: unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt == "n":
                    val.append("\n")
                elif nxt in ('"', "\\"):
                    val.append(nxt)
                else:
                    raise FormatError(f"{where}: bad escape \\{nxt} in a label value")
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise FormatError(f"{where}: raw newline in a label value")
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise FormatError(f"{where}: label {name} twice")
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            raise FormatError(f"{where}: expected , or }} after a label")


def _family_of(sample_name, families, current):
    """The family a sample belongs to: the current one if the name fits it."""
    if current is not None:
        fam = families[current]
        names = {current}
        if fam.type == "histogram":
            names = {current + "_bucket", current + "_sum", current + "_count"}
        elif fam.type == "summary":
            names = {current, current + "_sum", current + "_count"}
        if sample_name in names:
            return current
    return None


def parse(text):
    if not isinstance(text, str):
        text = text.decode("utf-8")
    if text and not text.endswith("\n"):
        raise FormatError("the exposition does not end with a newline")
    m = Metrics()
    families = m.families
    current = None
    closed = set()
    seen_series = set()
    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        where = f"line {n}"
        if line == "":
            raise FormatError(f"{where}: blank line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                kind, name = parts[1], parts[2]
                if not NAME_RX.match(name):
                    raise FormatError(f"{where}: bad metric name {name!r}")
                if name != current:
                    if name in closed or (name in families and families[name].samples):
                        raise FormatError(f"{where}: family {name} is not contiguous")
                    if current is not None:
                        closed.add(current)
                    current = name
                fam = families.setdefault(name, Family(name))
                rest = parts[3] if len(parts) > 3 else ""
                if kind == "HELP":
                    if fam.help is not None:
                        raise FormatError(f"{where}: second HELP for {name}")
                    if re.search(r"\\[^n\\]", rest) or rest.endswith("\\") and not rest.endswith("\\\\"):
                        raise FormatError(f"{where}: bad escape in HELP")
                    fam.help = rest.replace("\\n", "\n").replace("\\\\", "\\")
                else:
                    if fam.type is not None:
                        raise FormatError(f"{where}: second TYPE for {name}")
                    if fam.samples:
                        raise FormatError(f"{where}: TYPE after samples of {name}")
                    if rest not in TYPES:
                        raise FormatError(f"{where}: unknown type {rest!r}")
                    fam.type = rest
            continue  # other comments are allowed
        mname = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not mname:
            raise FormatError(f"{where}: bad sample line {line!r}")
        sname = mname.group(0)
        i = mname.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise FormatError(f"{where}: expected a space before the value")
        fields = line[i + 1:].split(" ")
        if len(fields) not in (1, 2) or fields[0] == "":
            raise FormatError(f"{where}: expected `value [timestamp]`")
        value = _value(fields[0], where)
        if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
            raise FormatError(f"{where}: bad timestamp {fields[1]!r}")
        fam_name = _family_of(sname, families, current)
        if fam_name is None:
            # An untyped sample starts its own family.
            if sname in families or sname in closed:
                raise FormatError(f"{where}: sample {sname} outside its family's block")
            if current is not None:
                closed.add(current)
            current = sname
            fam_name = sname
            families[sname] = Family(sname)
            families[sname].type = "untyped"
        fam = families[fam_name]
        for k in labels:
            if not LABEL_RX.match(k) or k.startswith("__"):
                raise FormatError(f"{where}: bad label name {k!r}")
        key = (sname, tuple(sorted(labels.items())))
        if key in seen_series:
            raise FormatError(f"{where}: series {sname}{labels} twice")
        seen_series.add(key)
        if fam.type == "counter" and not (value >= 0):
            raise FormatError(f"{where}: counter {sname} is {value}")
        if fam.type == "histogram" and sname.endswith("_bucket") and "le" not in labels:
            raise FormatError(f"{where}: bucket without le")
        fam.samples.append((sname, labels, value))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return m


def _check_histogram(fam):
    groups = {}
    for sname, labels, value in fam.samples:
        base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            g["buckets"].append((_value(labels["le"], fam.name), value))
        elif sname.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for base, g in groups.items():
        what = f"histogram {fam.name}{dict(base)}"
        les = [le for le, _ in g["buckets"]]
        if not les or les[-1] != math.inf:
            raise FormatError(f"{what}: no +Inf bucket last")
        if les != sorted(les) or len(set(les)) != len(les):
            raise FormatError(f"{what}: le not increasing")
        counts = [c for _, c in g["buckets"]]
        if counts != sorted(counts):
            raise FormatError(f"{what}: bucket counts decrease")
        if g["count"] is None or g["sum"] is None:
            raise FormatError(f"{what}: _sum or _count missing")
        if g["count"] != counts[-1]:
            raise FormatError(f"{what}: _count {g['count']} != +Inf bucket {counts[-1]}")


def ops_get(port, path, method="GET", host="127.0.0.1"):
    """A request to edgegate's METRICS_PORT: (status, {header: value}, body bytes)."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def scrape(port, host="127.0.0.1"):
    """GET /metrics on METRICS_PORT, parsed strictly: (Metrics, headers)."""
    status, headers, body = ops_get(port, "/metrics", host=host)
    if status != 200:
        raise AssertionError(f"GET /metrics: {status} {body[:500]!r}")
    return parse(body.decode("utf-8")), headers
