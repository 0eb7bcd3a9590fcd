/*
 * otids.capture._fastpcap: the pcap record loop in C, with the decoder's cheapest decisions.
 *
 * A Cursor walks the complete records of one buffer of a classic pcap file and yields
 * (timestamp, linktype, frame, wire length) tuples, exactly as the Python loop in
 * readers.py does. For Ethernet frames carrying a plain IPv4 packet (20-byte header, not a
 * fragment) it first takes the two decisions PacketDecoder.decode's fast path would take:
 *
 *   - the packet belongs to another worker's shard of the flows (same hash as link._mix,
 *     into SHARD_BUCKETS buckets, and the same bucket -> worker table);
 *   - the packet belongs to a bypassed flow (its 12 address/port bytes are in the decoder's
 *     bypass set for TCP or UDP; a TCP SYN never is, as in the decoder).
 *
 * A record is only skipped when it is earlier than the pipeline's next housekeeping time
 * (see Cursor.due_obj): the pipeline must see time pass as it would without the cursor.
 *
 * Such records are counted and skipped without becoming Python objects: on a busy network
 * most packets are other flows' traffic, and the Python loop spends more on making them
 * objects than on deciding to drop them. The sets are the decoder's own, read live, so the
 * decisions are the ones the decoder would take at that moment. Anything unusual (a record
 * longer than the limit, a record cut by the end of the buffer) stops the cursor: the
 * Python loop deals with it.
 *
 * bucket_weights() walks a buffer of records the same way to weigh the flow buckets for
 * otids.balance's plan of which worker takes which bucket; find_record() finds where the
 * records start in a stretch read from the middle of a file.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define RECORD_HEADER 16
#define LINKTYPE_ETHERNET 1
#define MIN_PLAIN_FRAME 54 /* Ethernet 14 + IPv4 20 + the 20 bytes a TCP header needs */
#define MIN_PORTS_FRAME 38 /* Ethernet 14 + IPv4 20 + the two ports */
#define SHARD_BUCKETS 256  /* link.SHARD_BUCKETS */
#define PORTS 65536

typedef struct {
    PyObject_HEAD
    PyObject *buf;        /* bytes: the reader's buffer */
    Py_ssize_t pos;       /* next record's offset in buf */
    int big_endian;       /* byte order of the record headers */
    double ticks;         /* fractions of a second per second (1e6 or 1e9) */
    PyObject *linktype;   /* int, shared by every tuple */
    long linktype_value;
    unsigned long limit;  /* longest record accepted */
    PyObject *bypass_tcp; /* set of 12-byte keys, or NULL */
    PyObject *bypass_udp;
    uint32_t shard_index, shard_count;
    unsigned char buckets[SHARD_BUCKETS]; /* worker of each flow bucket (link.shard_buckets) */
    /* A one-double buffer (array('d')) the pipeline keeps at the capture time of its next
       housekeeping: a record due by then is yielded even if it could be skipped, so that the
       pipeline sees time pass (flow expiry, bypass timeouts) exactly as without the cursor. */
    PyObject *due_obj;
    Py_buffer due_view;
    int has_due_view;
    /* Counters since the last reset(). */
    unsigned long long records, bypassed, other_shard, skipped_bytes;
    double skipped_ts;    /* timestamp of the last skipped record */
} Cursor;

static inline uint32_t rd32(const unsigned char *p, int big)
{
    if (big)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline uint32_t be32(const unsigned char *p) { return rd32(p, 1); }
static inline uint32_t be16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }

/* link._mix: the same arithmetic on 32-bit unsigned integers. */
static inline uint32_t mix(uint32_t addrs, uint32_t ports, uint32_t count)
{
    uint32_t h = (addrs * 0x9E3779B1u) ^ (ports * 0x85EBCA6Bu);
    return ((h ^ (h >> 16)) * 0x7FEB352Du) % count;
}

/* Ethernet carrying IPv4 with a 20-byte header, not a fragment (the decoder's fast path). */
static inline int plain_ipv4(const unsigned char *f)
{
    return f[12] == 0x08 && f[13] == 0x00 && f[14] == 0x45 && !(f[20] & 0x3F) && !f[21];
}

/* The flow bucket of a plain IPv4 frame: link.shard_of over SHARD_BUCKETS. */
static inline uint32_t bucket_of(const unsigned char *f)
{
    return mix(be32(f + 26) ^ be32(f + 30), be16(f + 34) ^ be16(f + 36), SHARD_BUCKETS);
}

/* 1: member, 0: not, -1: error. */
static int in_set(PyObject *set, const unsigned char *key)
{
    if (set == NULL || PySet_GET_SIZE(set) == 0)
        return 0;
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, 12);
    if (k == NULL)
        return -1;
    int found = PySet_Contains(set, k);
    Py_DECREF(k);
    return found;
}

/* 1: skip the frame, 0: keep it, -1: error. */
static int skippable(Cursor *c, const unsigned char *f, uint32_t caplen, double ts)
{
    if (c->linktype_value != LINKTYPE_ETHERNET || caplen < MIN_PLAIN_FRAME)
        return 0;
    if (!plain_ipv4(f))
        return 0;
    if (ts >= *(const double *)c->due_view.buf)
        return 0; /* the pipeline's housekeeping is due: it must see this record */
    if (c->shard_count > 1) {
        if (c->buckets[bucket_of(f)] != c->shard_index) {
            c->other_shard++;
            return 1;
        }
    }
    int found;
    if (f[23] == 6) {
        if (f[47] & 0x02)
            return 0;
        found = in_set(c->bypass_tcp, f + 26);
    } else if (f[23] == 17) {
        found = in_set(c->bypass_udp, f + 26);
    } else {
        return 0;
    }
    if (found == 1)
        c->bypassed++;
    return found;
}

static PyObject *Cursor_iternext(Cursor *c)
{
    if (c->buf == NULL)
        return NULL;
    const unsigned char *base = (const unsigned char *)PyBytes_AS_STRING(c->buf);
    Py_ssize_t size = PyBytes_GET_SIZE(c->buf);
    while (c->pos + RECORD_HEADER <= size) {
        const unsigned char *h = base + c->pos;
        uint32_t sec = rd32(h, c->big_endian);
        uint32_t frac = rd32(h + 4, c->big_endian);
        uint32_t caplen = rd32(h + 8, c->big_endian);
        uint32_t wirelen = rd32(h + 12, c->big_endian);
        if (caplen > c->limit || c->pos + RECORD_HEADER + (Py_ssize_t)caplen > size)
            return NULL; /* the Python loop decides: damage, or more data needed */
        const unsigned char *frame = h + RECORD_HEADER;
        double ts = (double)sec + (double)frac / c->ticks;
        c->pos += RECORD_HEADER + caplen;
        c->records++;
        int skip = skippable(c, frame, caplen, ts);
        if (skip < 0)
            return NULL;
        if (skip) {
            c->skipped_bytes += wirelen;
            c->skipped_ts = ts;
            continue;
        }
        PyObject *out = PyTuple_New(4);
        if (out == NULL)
            return NULL;
        PyObject *pts = PyFloat_FromDouble(ts);
        PyObject *pframe = PyBytes_FromStringAndSize((const char *)frame, caplen);
        PyObject *pwire = PyLong_FromUnsignedLong(wirelen);
        if (pts == NULL || pframe == NULL || pwire == NULL) {
            Py_XDECREF(pts);
            Py_XDECREF(pframe);
            Py_XDECREF(pwire);
            Py_DECREF(out);
            return NULL;
        }
        Py_INCREF(c->linktype);
        PyTuple_SET_ITEM(out, 0, pts);
        PyTuple_SET_ITEM(out, 1, c->linktype);
        PyTuple_SET_ITEM(out, 2, pframe);
        PyTuple_SET_ITEM(out, 3, pwire);
        return out;
    }
    return NULL;
}

static PyObject *Cursor_reset(Cursor *c, PyObject *args)
{
    PyObject *buf;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "O!n", &PyBytes_Type, &buf, &pos))
        return NULL;
    Py_INCREF(buf);
    Py_XSETREF(c->buf, buf);
    c->pos = pos;
    c->records = c->bypassed = c->other_shard = c->skipped_bytes = 0;
    Py_RETURN_NONE;
}

static PyObject *Cursor_counters(Cursor *c, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(nKKKKd)", c->pos, c->records, c->bypassed, c->other_shard,
                         c->skipped_bytes, c->skipped_ts);
}

static int Cursor_init(Cursor *c, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"big_endian", "ticks", "linktype", "limit", "bypass_tcp",
                             "bypass_udp", "shard_index", "shard_count", "due", "buckets",
                             NULL};
    int big;
    double ticks;
    long linktype;
    unsigned long limit;
    PyObject *tcp, *udp, *due, *buckets = NULL;
    unsigned int index, count;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "pdlkOOIIO|O!", kwlist, &big, &ticks,
                                     &linktype, &limit, &tcp, &udp, &index, &count, &due,
                                     &PyBytes_Type, &buckets))
        return -1;
    if (buckets != NULL && PyBytes_GET_SIZE(buckets) != SHARD_BUCKETS) {
        PyErr_SetString(PyExc_ValueError, "buckets must be 256 bytes");
        return -1;
    }
    if (c->has_due_view) {
        PyBuffer_Release(&c->due_view);
        c->has_due_view = 0;
    }
    if (PyObject_GetBuffer(due, &c->due_view, PyBUF_SIMPLE) < 0)
        return -1;
    c->has_due_view = 1;
    if (c->due_view.len < (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "due must hold one double (array('d', [0.0]))");
        return -1;
    }
    Py_INCREF(due);
    Py_XSETREF(c->due_obj, due);
    if (!PySet_Check(tcp) || !PySet_Check(udp)) {
        PyErr_SetString(PyExc_TypeError, "bypass_tcp and bypass_udp must be sets");
        return -1;
    }
    if (count == 0 || index >= count || ticks <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad shard or ticks");
        return -1;
    }
    c->big_endian = big;
    c->ticks = ticks;
    c->linktype_value = linktype;
    Py_XSETREF(c->linktype, PyLong_FromLong(linktype));
    if (c->linktype == NULL)
        return -1;
    c->limit = limit;
    Py_INCREF(tcp);
    Py_XSETREF(c->bypass_tcp, tcp);
    Py_INCREF(udp);
    Py_XSETREF(c->bypass_udp, udp);
    c->shard_index = index;
    c->shard_count = count;
    for (int b = 0; b < SHARD_BUCKETS; b++) /* default: link.round_robin_buckets(count) */
        c->buckets[b] = buckets != NULL ? (unsigned char)PyBytes_AS_STRING(buckets)[b]
                                        : (unsigned char)(b % count);
    return 0;
}

static void Cursor_dealloc(Cursor *c)
{
    if (c->has_due_view)
        PyBuffer_Release(&c->due_view);
    Py_XDECREF(c->due_obj);
    Py_XDECREF(c->buf);
    Py_XDECREF(c->linktype);
    Py_XDECREF(c->bypass_tcp);
    Py_XDECREF(c->bypass_udp);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Cursor_methods[] = {
    {"reset", (PyCFunction)Cursor_reset, METH_VARARGS,
     "reset(buffer, pos): walk buffer from pos; zero the counters."},
    {"counters", (PyCFunction)Cursor_counters, METH_NOARGS,
     "(pos, records, bypassed, other_shard, skipped_bytes, last_skipped_ts) since reset."},
    {NULL, NULL, 0, NULL},
};

/* bucket_weights(buffer, pos, big_endian, tcp_costs, udp_costs, other_cost): see the doc. */
static PyObject *bucket_weights(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buf, tcp, udp;
    Py_ssize_t pos;
    int big;
    unsigned long other;
    if (!PyArg_ParseTuple(args, "y*npy*y*k", &buf, &pos, &big, &tcp, &udp, &other))
        return NULL;
    PyObject *out = NULL;
    if (tcp.len != PORTS || udp.len != PORTS || pos < 0) {
        PyErr_SetString(PyExc_ValueError, "costs must be 65536 bytes, pos not negative");
        goto done;
    }
    unsigned long long weights[SHARD_BUCKETS] = {0};
    const unsigned char *base = (const unsigned char *)buf.buf;
    const unsigned char *tcp_costs = (const unsigned char *)tcp.buf;
    const unsigned char *udp_costs = (const unsigned char *)udp.buf;
    while (pos + RECORD_HEADER <= buf.len) {
        uint32_t caplen = rd32(base + pos + 8, big);
        if ((Py_ssize_t)caplen > buf.len - pos - RECORD_HEADER)
            break; /* cut by the end of the buffer */
        const unsigned char *f = base + pos + RECORD_HEADER;
        pos += RECORD_HEADER + caplen;
        if (caplen < MIN_PORTS_FRAME || !plain_ipv4(f))
            continue;
        const unsigned char *costs = f[23] == 6 ? tcp_costs : f[23] == 17 ? udp_costs : NULL;
        if (costs == NULL)
            continue;
        unsigned long cost = costs[be16(f + 34)];
        if (costs[be16(f + 36)] > cost)
            cost = costs[be16(f + 36)];
        weights[bucket_of(f)] += cost ? cost : other;
    }
    out = PyList_New(SHARD_BUCKETS);
    for (int b = 0; out != NULL && b < SHARD_BUCKETS; b++) {
        PyObject *w = PyLong_FromUnsignedLongLong(weights[b]);
        if (w == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, b, w);
    }
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&tcp);
    PyBuffer_Release(&udp);
    return out;
}

/* A plausible record header: fraction below one second, captured length within the limit and
   the wire length, seconds within span of first. */
static int header_ok(const unsigned char *h, int big, uint32_t ticks, long long first,
                     long long span, uint32_t limit)
{
    long long sec = rd32(h, big);
    uint32_t caplen = rd32(h + 8, big);
    return rd32(h + 4, big) < ticks && caplen <= limit && caplen <= rd32(h + 12, big) &&
           sec >= first - span && sec <= first + span;
}

/* frame_bucket(frame): see the doc. */
static PyObject *frame_bucket(PyObject *Py_UNUSED(module), PyObject *frame)
{
    if (!PyBytes_Check(frame) || PyBytes_GET_SIZE(frame) < MIN_PORTS_FRAME) {
        PyErr_SetString(PyExc_ValueError, "frame_bucket needs a frame of 38 bytes or more");
        return NULL;
    }
    return PyLong_FromUnsignedLong(bucket_of((const unsigned char *)PyBytes_AS_STRING(frame)));
}

/* find_record(buffer, big_endian, ticks, first_sec, span, chain, limit): see the doc. */
static PyObject *find_record(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buf;
    int big;
    unsigned long ticks, limit;
    long long first, span;
    int chain;
    if (!PyArg_ParseTuple(args, "y*pkLLik", &buf, &big, &ticks, &first, &span, &chain, &limit))
        return NULL;
    const unsigned char *base = (const unsigned char *)buf.buf;
    Py_ssize_t found = -1;
    for (Py_ssize_t start = 0; found < 0 && start + RECORD_HEADER <= buf.len; start++) {
        Py_ssize_t pos = start;
        int n = 0;
        while (n < chain && pos + RECORD_HEADER <= buf.len &&
               header_ok(base + pos, big, (uint32_t)ticks, first, span, (uint32_t)limit)) {
            pos += RECORD_HEADER + rd32(base + pos + 8, big);
            n++;
        }
        if (n == chain)
            found = start;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef module_methods[] = {
    {"bucket_weights", bucket_weights, METH_VARARGS,
     "bucket_weights(buffer, pos, big_endian, tcp_costs, udp_costs, other_cost): the weight\n"
     "of each flow bucket (list of 256 ints) over the complete Ethernet pcap records of\n"
     "buffer from pos, as otids.balance.weigh_frame adds it up."},
    {"frame_bucket", frame_bucket, METH_O,
     "frame_bucket(frame): the flow bucket of a plain Ethernet/IPv4 frame (link.frame_bucket)."},
    {"find_record", find_record, METH_VARARGS,
     "find_record(buffer, big_endian, ticks, first_sec, span, chain, limit): the first\n"
     "offset of buffer where chain record headers in a row look right (otids.balance._sync),\n"
     "or -1."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "otids.capture._fastpcap.Cursor",
    .tp_basicsize = sizeof(Cursor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Iterator over the complete pcap records of a buffer (see the module doc).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Cursor_init,
    .tp_dealloc = (destructor)Cursor_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Cursor_iternext,
    .tp_methods = Cursor_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "otids.capture._fastpcap",
    .m_doc = "The pcap record loop in C (optional accelerator of otids.capture.readers).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpcap(void)
{
    if (PyType_Ready(&CursorType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CursorType);
    if (PyModule_AddObject(m, "Cursor", (PyObject *)&CursorType) < 0) {
        Py_DECREF(&CursorType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
