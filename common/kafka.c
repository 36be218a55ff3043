/*
 * kafka.c - builds librdkafka producers, consumers and topics for pgrelay.
 *
 * NOTES
 *
 * Configuration.  A client's configuration is kafka.properties (the
 * operator's librdkafka properties, config.h), then pgrelay's own settings
 * (kfk_own below), which therefore win.  pgrelay's guarantees rest on its
 * own settings (idempotence, acks=all, no offset reset, read_committed,
 * offsets stored only once B committed, ...), so kafka.properties may not
 * set one: kfk_conf_check() refuses a property that names one, and one
 * that changes one under another name (librdkafka's aliases:
 * request.required.acks is acks, queue.buffering.max.ms is linger.ms), by
 * setting each property on a configuration that holds pgrelay's and
 * reading pgrelay's back.  Every property is set with rd_kafka_conf_set,
 * whose error is reported with the property's FILE:LINE.  pgrelayd runs
 * the check at start and reload, and each worker at its start (exit 78 on
 * an error); pgrelayd -t also creates a producer and a consumer with no
 * brokers, where librdkafka checks what rd_kafka_conf_set cannot (the
 * SASL mechanism, that the TLS files load).  pgrelayd itself never creates
 * a handle: it forks.  A worker whose handle librdkafka refuses exits 78.
 *
 * Secrets.  The values of secret properties (cfg_kprop_is_secret) are
 * replaced by [redacted] in every line that passes here: librdkafka's log
 * and error callbacks and the errors of kfk_conf_check.  librdkafka 2.0.2
 * redacts them in its own configuration dump (debug=conf) as well.
 *
 * Broker errors.  librdkafka reports a broker connection's failure at
 * each reconnect, through the error callback (its log callback's FAIL line
 * says the same and goes to debug).  A process logs one line per kind of
 * failure (error code), then at most one a minute while it lasts.  A
 * failed SASL login (__AUTHENTICATION) or TLS handshake (__SSL) is an
 * ERROR line naming it and what to check.  Debian 12's librdkafka 2.0.2
 * computes a SCRAM proof that Kafka 4 brokers refuse even with the right
 * password (librdkafka #4895, fixed in 2.6.1); with SCRAM and an older
 * librdkafka the line says so.
 */
#define _POSIX_C_SOURCE 200809L
#include "kafka.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "worker.h"

#define KFK_STR_(x) #x
#define KFK_STR(x) KFK_STR_(x)

static atomic_int kfk_fatal_seen;

int
kfk_fatal(void)
{
	return atomic_load(&kfk_fatal_seen);
}

/* ---- pgrelay's own settings ------------------------------------------- */

enum kfk_client { KFK_PRODUCER = 1, KFK_CONSUMER = 2, KFK_BOTH = 3 };

/* A setting pgrelay makes itself.  value NULL: from the configuration or
 * the worker (from says which), or, with from starting "never", a
 * property pgrelay never sets and refuses all the same. */
struct kfk_own {
	const char *name;
	const char *value;
	const char *from;
	enum kfk_client client;
};

static const struct kfk_own kfk_own[] = {
	{ "bootstrap.servers", NULL, "kafka.brokers", KFK_BOTH },
	{ "client.id", NULL, "the worker's name", KFK_BOTH },
	{ "socket.keepalive.enable", "true", NULL, KFK_BOTH },

	{ "enable.idempotence", "true", NULL, KFK_PRODUCER },
	{ "acks", "all", NULL, KFK_PRODUCER },
	{ "linger.ms", "2", NULL, KFK_PRODUCER },
	/* none: a consumer's prefetch limit counts decompressed bytes and its
	 * fetch size compressed ones, so lz4 multiplied a consumer's memory
	 * while it drained a backlog (42 MB against 22 MB measured, README);
	 * CDC events are small and Kafka is near, there is little to save on
	 * the wire */
	{ "compression.codec", "none", NULL, KFK_PRODUCER },
	/* the default, fixed: the CDC producer picks each record's partition
	 * from its payload key the same way (common/cdc.c) */
	{ "partitioner", "consistent_random", NULL, KFK_PRODUCER },
	/* never give up: the position stays put */
	{ "message.timeout.ms", "0", NULL, KFK_PRODUCER },

	{ "group.id", NULL, "kafka.group_id, etl.group_id", KFK_CONSUMER },
	{ "partition.assignment.strategy", "cooperative-sticky", NULL, KFK_CONSUMER },
	/* Kafka's committed offset is for lag monitoring only (the target
	 * holds the real one): the consumer stores an offset once its batch
	 * committed on the target, librdkafka sends the stored offsets once a
	 * second and on revoke and close, not one OffsetCommit per batch to
	 * the group coordinator */
	{ "enable.auto.commit", "true", NULL, KFK_CONSUMER },
	{ "auto.commit.interval.ms", "1000", NULL, KFK_CONSUMER },
	{ "enable.auto.offset.store", "false", NULL, KFK_CONSUMER },
	/* an offset out of the log's range means changes the target never
	 * applied are gone: stop, never skip (sink.c, Gaps); a partition the
	 * target has no offset for starts at its beginning by an explicit
	 * assignment, not by a reset */
	{ "auto.offset.reset", "error", NULL, KFK_CONSUMER },
	{ "isolation.level", "read_committed", NULL, KFK_CONSUMER },
	{ "session.timeout.ms", "10000", NULL, KFK_CONSUMER },
	/* a rebalance round is noticed within 250 ms */
	{ "heartbeat.interval.ms", "250", NULL, KFK_CONSUMER },
	/* prefetch: 512 KB is about a batch of 1,000 changes ahead;
	 * librdkafka's 64 MB and 1 MB defaults would make a consumer's RSS
	 * follow the backlog (kafka.h) */
	{ "queued.max.messages.kbytes", KFK_STR(KFK_PREFETCH_KBYTES), NULL, KFK_CONSUMER },
	{ "queued.min.messages", KFK_STR(KFK_PREFETCH_MESSAGES), NULL, KFK_CONSUMER },
	{ "fetch.message.max.bytes", KFK_STR(KFK_FETCH_PARTITION_BYTES), NULL, KFK_CONSUMER },

	{ "transactional.id", NULL, "the CDC producer's fencing: "
	    "pgrelay-producer-CDC_TOPIC", KFK_BOTH },
	{ "group.instance.id", NULL, "never: every consumer has the same "
	    "configuration, and one static member id would fence all but one",
	    KFK_BOTH },
	{ "enable.partition.eof", NULL, "never: the consumers do not expect "
	    "end-of-partition events", KFK_BOTH },
};

#define NOWN (sizeof(kfk_own) / sizeof(kfk_own[0]))

static const struct kfk_own *
own_find(const char *name)
{
	for (size_t i = 0; i < NOWN; i++)
		if (strcmp(kfk_own[i].name, name) == 0)
			return &kfk_own[i];
	return NULL;
}

/* The value pgrelay gives own in a client, or NULL (not set there). */
static const char *
own_value(const struct kfk_own *own, const char *brokers, const char *client_id,
    const char *group_id)
{
	if (own->value != NULL)
		return own->value;
	if (strcmp(own->name, "bootstrap.servers") == 0)
		return brokers;
	if (strcmp(own->name, "client.id") == 0)
		return client_id;
	if (strcmp(own->name, "group.id") == 0)
		return group_id;
	return NULL;
}

/* ---- secrets ----------------------------------------------------------- */

/* The configuration whose secrets the callbacks redact: set before the
 * first handle is created, then only read (librdkafka's threads call the
 * log callback). */
static const struct cfg *kfk_log_cfg;

/* Copies in to out (outlen > 0) with the value of each of cfg's secret
 * properties replaced by [redacted]. */
static void
redact(const struct cfg *cfg, const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	while (*in != '\0' && o + 1 < outlen) {
		size_t skip = 0;

		for (int i = 0; cfg != NULL && i < cfg->nkprops && skip == 0; i++) {
			const char *v = cfg->kprops[i].value;
			size_t vl = v ? strlen(v) : 0;

			if (cfg->kprops[i].secret && vl > 0 && strncmp(in, v, vl) == 0)
				skip = vl;
		}
		if (skip > 0) {
			int w = snprintf(out + o, outlen - o, "[redacted]");
			o += w > 0 && (size_t)w < outlen - o ? (size_t)w : outlen - o - 1;
			in += skip;
		} else {
			out[o++] = *in++;
		}
	}
	out[o] = '\0';
}

/* ---- callbacks --------------------------------------------------------- */

static void
kfk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	char line[2048];
	enum log_level l = level <= 3 ? LOG_LVL_ERROR :
	    level <= 4 ? LOG_LVL_WARN : level <= 6 ? LOG_LVL_INFO : LOG_LVL_DEBUG;

	/* A broker connection's failure comes to the error callback as well,
	 * which says what to do about it; every client gets all of
	 * kafka.properties, so a property of the other kind is no news. */
	if (strcmp(fac, "FAIL") == 0 || (strcmp(fac, "CONFWARN") == 0 &&
	    strstr(buf, "property and will be ignored by this") != NULL))
		l = LOG_LVL_DEBUG;
	redact(kfk_log_cfg, buf, line, sizeof(line));
	log_msg(l, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, line);
}

/* The SASL mechanism kafka.properties names, or "". */
static const char *
sasl_mechanism(const struct cfg *cfg)
{
	for (int i = 0; cfg != NULL && i < cfg->nkprops; i++)
		if (strcmp(cfg->kprops[i].name, "sasl.mechanisms") == 0 ||
		    strcmp(cfg->kprops[i].name, "sasl.mechanism") == 0)
			return cfg->kprops[i].value;
	return "";
}

/* How often error lines come: librdkafka reports a broker's failure at
 * each reconnect (every few seconds, backing off to 10 s).  A code logged
 * less than a minute ago goes to debug, and the next line of that code
 * counts what was held back.  The error callback runs in the thread that
 * polls, so no lock. */
struct kfk_err_rate {
	int err;
	time_t last;		/* CLOCK_MONOTONIC seconds; 0: never */
	long held;
};
static struct kfk_err_rate kfk_err_rates[8];

static struct kfk_err_rate *
err_rate(int err)
{
	struct kfk_err_rate *oldest = &kfk_err_rates[0];

	for (size_t i = 0; i < sizeof(kfk_err_rates) / sizeof(kfk_err_rates[0]); i++) {
		if (kfk_err_rates[i].last != 0 && kfk_err_rates[i].err == err)
			return &kfk_err_rates[i];
		if (kfk_err_rates[i].last < oldest->last)
			oldest = &kfk_err_rates[i];
	}
	oldest->err = err;
	oldest->last = 0;
	oldest->held = 0;
	return oldest;
}

static time_t
mono_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec + 1;	/* never 0 */
}

/* 1 when a line of err is due; *held: how many were held back since. */
static int
err_due(int err, long *held)
{
	struct kfk_err_rate *r = err_rate(err);
	time_t now = mono_s();

	if (r->last != 0 && now - r->last < 60) {
		r->held++;
		return 0;
	}
	*held = r->held;
	r->held = 0;
	r->last = now;
	return 1;
}

/* 1 when a TLS handshake failed within the last minute.  librdkafka
 * 2.0.2 reports the first failed handshake as __SSL and those after it,
 * the same failure, as __TRANSPORT "... in state SSL_HANDSHAKE". */
static int
tls_failing(void)
{
	for (size_t i = 0; i < sizeof(kfk_err_rates) / sizeof(kfk_err_rates[0]); i++)
		if (kfk_err_rates[i].err == RD_KAFKA_RESP_ERR__SSL &&
		    kfk_err_rates[i].last != 0 && mono_s() - kfk_err_rates[i].last < 60)
			return 1;
	return 0;
}

/* The line for a failed SASL login or TLS handshake: what failed, and
 * what to check. */
static void
login_error(int err, const char *reason, const char *more)
{
	char hint[320] = "";

	if (err == RD_KAFKA_RESP_ERR__SSL) {
		log_error("kafka: TLS handshake failed: %s; check ssl.ca.location in "
		    "kafka.properties, and that the broker's certificate names the "
		    "host of kafka.brokers%s (retrying)", reason, more);
		return;
	}
	if (strncmp(sasl_mechanism(kfk_log_cfg), "SCRAM", 5) == 0 &&
	    rd_kafka_version() < 0x020601ff)
		snprintf(hint, sizeof(hint), "; note: librdkafka %s computes a SCRAM "
		    "proof that Kafka 4 brokers refuse even with the right password "
		    "(librdkafka #4895, fixed in 2.6.1): use PLAIN over SASL_SSL "
		    "there, or a newer librdkafka", rd_kafka_version_str());
	log_error("kafka: SASL authentication failed: %s; check sasl.mechanisms, "
	    "sasl.username and sasl.password in kafka.properties%s%s (retrying)",
	    reason, hint, more);
}

void
kfk_fatal_clear(void)
{
	atomic_store(&kfk_fatal_seen, 0);
}

/* librdkafka 2.0.2 reports a fenced transactional producer as __FENCED
 * (rdkafka_txnmgr.c maps the broker's two codes to it); the broker's own
 * codes are accepted too. */
static int
fenced_error(rd_kafka_resp_err_t e)
{
	return e == RD_KAFKA_RESP_ERR__FENCED ||
	    e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	    e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

int
kfk_fenced(rd_kafka_t *rk)
{
	return fenced_error(rd_kafka_fatal_error(rk, NULL, 0));
}

static void
kfk_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char fbuf[512], line[1024], more[80] = "";
	int code = err;
	long held = 0;

	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fbuf, sizeof(fbuf));
		redact(kfk_log_cfg, fbuf, line, sizeof(line));
		if (fenced_error(ferr))
			log_warn("kafka: this producer was fenced (%s: %s): a newer "
			    "producer with its transactional.id took over, and "
			    "nothing more it sends can reach the topic",
			    rd_kafka_err2name(ferr), line);
		else
			log_error("kafka fatal error %s: %s; the process exits and "
			    "is restarted", rd_kafka_err2name(ferr), line);
		atomic_store(&kfk_fatal_seen, 1);
		return;
	}
	redact(kfk_log_cfg, reason, line, sizeof(line));
	if (err == RD_KAFKA_RESP_ERR__TRANSPORT && tls_failing())
		code = RD_KAFKA_RESP_ERR__SSL;
	if (!err_due(code, &held)) {
		log_debug("kafka: %s: %s (again)", rd_kafka_err2name(
		    (rd_kafka_resp_err_t)err), line);
		return;
	}
	if (held > 0)
		snprintf(more, sizeof(more), "; %ld more like it in the last minute",
		    held);
	if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION || code == RD_KAFKA_RESP_ERR__SSL) {
		login_error(code, line, more);
		return;
	}
	/* Transport errors while a broker restarts are retried by librdkafka. */
	log_warn("kafka: %s: %s%s (retrying)", rd_kafka_err2name(
	    (rd_kafka_resp_err_t)err), line, more);
}

/* ---- configurations ---------------------------------------------------- */

/* FILE:LINE: kafka.properties: NAME: for errors about property i. */
static int
prop_where(const struct cfg *cfg, int i, char *err, size_t errlen)
{
	return snprintf(err, errlen, "%s:%d: kafka.properties: %s: ", cfg->path,
	    cfg->kprops[i].line, cfg->kprops[i].name);
}

/* Sets kafka.properties entry i on conf; -1 with err (librdkafka's
 * reason, FILE:LINE and the property; a secret's value redacted). */
static int
prop_set(rd_kafka_conf_t *conf, const struct cfg *cfg, int i, char *err,
    size_t errlen)
{
	char why[512], clean[512];
	const struct cfg_kprop *p = &cfg->kprops[i];

	if (rd_kafka_conf_set(conf, p->name, p->value, why, sizeof(why)) ==
	    RD_KAFKA_CONF_OK)
		return 0;
	redact(cfg, why, clean, sizeof(clean));
	int n = prop_where(cfg, i, err, errlen);
	if (n > 0 && (size_t)n < errlen)
		snprintf(err + n, errlen - n, "librdkafka: %s", clean);
	return -1;
}

static int
own_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
    size_t errlen)
{
	char why[256];

	if (rd_kafka_conf_set(conf, key, val, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "librdkafka setting %s=%s: %s", key, val, why);
		return -1;
	}
	return 0;
}

/* A client's configuration: kafka.properties (with_props), then pgrelay's
 * own settings for client (bootstrap.servers only when brokers is not
 * NULL), then the log and error callbacks.  NULL with err. */
static rd_kafka_conf_t *
client_conf(const struct cfg *cfg, enum kfk_client client, int with_props,
    const char *brokers, const char *client_id, const char *group_id,
    char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	for (int i = 0; with_props && i < cfg->nkprops; i++)
		if (prop_set(conf, cfg, i, err, errlen) < 0)
			goto fail;
	for (size_t i = 0; i < NOWN; i++) {
		const char *v = (kfk_own[i].client & client) ?
		    own_value(&kfk_own[i], brokers, client_id, group_id) : NULL;

		if (v != NULL && own_set(conf, kfk_own[i].name, v, err, errlen) < 0)
			goto fail;
	}
	rd_kafka_conf_set_log_cb(conf, kfk_log_cb);
	rd_kafka_conf_set_error_cb(conf, kfk_error_cb);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* The property librdkafka's message why is about: the first whose name
 * it holds, else the first (not secret, 3 characters or more) whose value
 * it holds ("Unsupported SASL mechanism: NOPE"); -1 if none. */
static int
prop_named(const struct cfg *cfg, const char *why)
{
	for (int i = 0; i < cfg->nkprops; i++)
		if (strstr(why, cfg->kprops[i].name) != NULL)
			return i;
	for (int i = 0; i < cfg->nkprops; i++)
		if (!cfg->kprops[i].secret && strlen(cfg->kprops[i].value) >= 3 &&
		    strstr(why, cfg->kprops[i].value) != NULL)
			return i;
	return -1;
}

/* The error of a handle librdkafka would not create (why), on the line of
 * the property it is about, else of kafka.properties. */
static void
create_error(const struct cfg *cfg, const char *what, const char *why,
    char *err, size_t errlen)
{
	char clean[512];
	int i = prop_named(cfg, why);

	redact(cfg, why, clean, sizeof(clean));
	if (i >= 0) {
		int n = prop_where(cfg, i, err, errlen);
		if (n > 0 && (size_t)n < errlen)
			snprintf(err + n, errlen - n, "librdkafka cannot create a %s "
			    "with it: %s", what, clean);
		return;
	}
	snprintf(err, errlen, "%s:%d: kafka.properties: librdkafka cannot create "
	    "a %s: %s", cfg->path, cfg->nkprops ? cfg->kprops_line : 1, what, clean);
}

/* Refuses kafka.properties entry i when pgrelay sets it itself. */
static int
prop_own_check(const struct cfg *cfg, int i, char *err, size_t errlen)
{
	const struct kfk_own *own = own_find(cfg->kprops[i].name);
	int n;

	if (own == NULL)
		return 0;
	n = prop_where(cfg, i, err, errlen);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	if (own->value != NULL)
		snprintf(err + n, errlen - n, "pgrelay sets it itself (to %s); it "
		    "cannot be overridden", own->value);
	else if (strncmp(own->from, "never", 5) == 0)
		snprintf(err + n, errlen - n, "pgrelay refuses it (%s)", own->from);
	else
		snprintf(err + n, errlen - n, "pgrelay sets it itself (from %s); it "
		    "cannot be overridden", own->from);
	return -1;
}

/* Sets every property on a configuration of client that holds pgrelay's
 * own settings, and reads these back after each: -1 with err when
 * librdkafka refuses a property or one changed a setting of pgrelay's. */
static int
props_check(const struct cfg *cfg, enum kfk_client client, char *err,
    size_t errlen)
{
	char want[NOWN][256], got[256];
	rd_kafka_conf_t *conf = client_conf(cfg, client, 0, cfg->brokers,
	    "pgrelay-check", cfg->group_id, err, errlen);
	int rc = 0;

	if (conf == NULL)
		return -1;
	for (size_t k = 0; k < NOWN; k++) {
		size_t sz = sizeof(want[k]);

		want[k][0] = '\0';
		if ((kfk_own[k].client & client) &&
		    rd_kafka_conf_get(conf, kfk_own[k].name, want[k], &sz) !=
		    RD_KAFKA_CONF_OK)
			want[k][0] = '\0';
	}
	for (int i = 0; i < cfg->nkprops && rc == 0; i++) {
		if (prop_set(conf, cfg, i, err, errlen) < 0) {
			rc = -1;
			break;
		}
		for (size_t k = 0; k < NOWN && rc == 0; k++) {
			size_t sz = sizeof(got);

			if (!(kfk_own[k].client & client) || want[k][0] == '\0')
				continue;
			if (rd_kafka_conf_get(conf, kfk_own[k].name, got, &sz) !=
			    RD_KAFKA_CONF_OK || strcmp(got, want[k]) == 0)
				continue;
			int n = prop_where(cfg, i, err, errlen);
			if (n > 0 && (size_t)n < errlen)
				snprintf(err + n, errlen - n, "it sets %s, which pgrelay "
				    "sets itself; it cannot be overridden",
				    kfk_own[k].name);
			rc = -1;
		}
	}
	rd_kafka_conf_destroy(conf);
	return rc;
}

static void
quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk; (void)level; (void)fac; (void)buf;
}

int
kfk_conf_check(const struct cfg *cfg, int create, char *err, size_t errlen)
{
	static const enum kfk_client clients[] = { KFK_PRODUCER, KFK_CONSUMER };

	for (int i = 0; i < cfg->nkprops; i++)
		if (prop_own_check(cfg, i, err, errlen) < 0)
			return -1;
	for (size_t c = 0; c < 2; c++)
		if (props_check(cfg, clients[c], err, errlen) < 0)
			return -1;
	for (size_t c = 0; create && c < 2; c++) {
		char why[512];
		const char *what = clients[c] == KFK_PRODUCER ? "producer" : "consumer";
		rd_kafka_conf_t *conf = client_conf(cfg, clients[c], 1, NULL,
		    "pgrelay-check", cfg->group_id, err, errlen);
		rd_kafka_t *rk;

		if (conf == NULL)
			return -1;
		/* no brokers: nothing connects; its warnings about that and
		 * its errors (which come back in why) are not for the log */
		rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
		rk = rd_kafka_new(clients[c] == KFK_PRODUCER ? RD_KAFKA_PRODUCER :
		    RD_KAFKA_CONSUMER, conf, why, sizeof(why));
		if (rk == NULL) {
			rd_kafka_conf_destroy(conf);
			create_error(cfg, what, why, err, errlen);
			return -1;
		}
		rd_kafka_destroy(rk);	/* conf was owned by rk */
	}
	return 0;
}

/* A producer with the settings every pgrelay producer shares (kfk_own,
 * kafka.properties), then the NULL-terminated pairs of extra. */
static rd_kafka_t *
producer_new(const struct cfg *cfg, const char *client_id,
    const char *const *extra, kfk_dr_cb dr, void *opaque, char *err,
    size_t errlen)
{
	char why[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;

	if (kfk_log_cfg != cfg)	/* once: librdkafka's threads read it */
		kfk_log_cfg = cfg;
	conf = client_conf(cfg, KFK_PRODUCER, 1, cfg->brokers, client_id, NULL,
	    err, errlen);
	if (conf == NULL)
		return NULL;
	for (size_t i = 0; extra[i] != NULL; i += 2) {
		if (own_set(conf, extra[i], extra[i + 1], err, errlen) < 0) {
			rd_kafka_conf_destroy(conf);
			return NULL;
		}
	}
	if (dr != NULL)
		rd_kafka_conf_set_dr_msg_cb(conf, dr);
	rd_kafka_conf_set_opaque(conf, opaque);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		create_error(cfg, "producer", why, err, errlen);
		return NULL;
	}
	return rk;	/* conf is owned by rk now */
}

rd_kafka_t *
kfk_producer_new(const struct cfg *cfg, const char *client_id, kfk_dr_cb dr,
    void *opaque, char *err, size_t errlen)
{
	static const char *const extra[] = {
		"message.timeout.ms", "0",	/* never give up: the position stays put */
		NULL
	};

	return producer_new(cfg, client_id, extra, dr, opaque, err, errlen);
}

rd_kafka_t *
kfk_txn_producer_new(const struct cfg *cfg, const char *client_id,
    const char *transactional_id, kfk_dr_cb dr, void *opaque, char *err,
    size_t errlen)
{
	const char *const extra[] = {
		"transactional.id", transactional_id,
		/* not 0 (kfk_own's "never give up"): a transactional producer's
		 * messages time out with its transaction (transaction.timeout.ms,
		 * 60 s): one that cannot be delivered fails its transaction,
		 * which is aborted and sent again from the position, rather than
		 * keep it open for ever */
		"message.timeout.ms", "60000",
		NULL
	};

	return producer_new(cfg, client_id, extra, dr, opaque, err, errlen);
}

rd_kafka_t *
kfk_consumer_new(const struct cfg *cfg, const char *group_id,
    const char *client_id, kfk_rebalance_cb rebalance, void *opaque, char *err,
    size_t errlen)
{
	char why[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;

	if (kfk_log_cfg != cfg)	/* once: librdkafka's threads read it */
		kfk_log_cfg = cfg;
	conf = client_conf(cfg, KFK_CONSUMER, 1, cfg->brokers, client_id, group_id,
	    err, errlen);
	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	rd_kafka_conf_set_opaque(conf, opaque);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		create_error(cfg, "consumer", why, err, errlen);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

/* Partition count of an existing topic, or -1 with err; *replicas gets
 * its first partition's replica count, *brokers the cluster's size. */
static int
topic_partitions(rd_kafka_t *rk, const char *topic, int *replicas, int *brokers,
    char *err, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t e;
	int n = -1;

	if (t == NULL) {
		snprintf(err, errlen, "topic %s: %s", topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	e = rd_kafka_metadata(rk, 0, t, &md, 10000);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(err, errlen, "topic %s: metadata: %s", topic, rd_kafka_err2str(e));
	else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(err, errlen, "topic %s: metadata: %s", topic,
		    md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no topic");
	else {
		n = md->topics[0].partition_cnt;
		*brokers = md->broker_cnt;
		*replicas = n > 0 ? md->topics[0].partitions[0].replica_cnt : 0;
	}
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

/* CreateTopics errors that no retry can mend. */
static int
topic_error_is_config(rd_kafka_resp_err_t e)
{
	return e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ||
	    e == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS ||
	    e == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
	    e == RD_KAFKA_RESP_ERR_INVALID_CONFIG ||
	    e == RD_KAFKA_RESP_ERR_POLICY_VIOLATION;
}

/* The settings pgrelay gives the topics it creates (see kafka.h), as
 * name and value pairs; NULL-terminated. */
static void
topic_settings(const struct cfg *cfg, char isr[16], char ret[24],
    const char *pairs[11])
{
	snprintf(isr, 16, "%d", cfg->min_insync_replicas);
	snprintf(ret, 24, "%lld", (long long)cfg->retention_ms);
	const char *p[] = { "cleanup.policy", "delete", "retention.ms", ret,
	    "retention.bytes", "-1", "min.insync.replicas", isr,
	    "unclean.leader.election.enable", "false", NULL };
	memcpy(pairs, p, sizeof(p));
}

/* Logs a warning for each setting of the existing topic t that can lose
 * changes the consumers have not applied yet.  Never fails: a topic we
 * cannot describe is only noted. */
static void
check_topic_settings(rd_kafka_t *rk, const char *topic, const struct cfg *cfg,
    int replicas, int brokers)
{
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(
	    RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	const rd_kafka_ConfigResource_t **rs;
	size_t nrs = 0, nc = 0;

	rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 10000);
	if (ev == NULL || rd_kafka_event_error(ev)) {
		log_info("topic %s: cannot read its settings (%s); not checked",
		    topic, ev ? rd_kafka_event_error_string(ev) : "no answer in 10 s");
		goto out;
	}
	rs = rd_kafka_DescribeConfigs_result_resources(
	    rd_kafka_event_DescribeConfigs_result(ev), &nrs);
	const rd_kafka_ConfigEntry_t **ce = nrs ?
	    rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
	for (size_t i = 0; i < nc; i++) {
		const char *k = rd_kafka_ConfigEntry_name(ce[i]);
		const char *v = rd_kafka_ConfigEntry_value(ce[i]);
		long long n = v ? strtoll(v, NULL, 10) : 0;

		if (v == NULL)
			continue;
		if (strcmp(k, "cleanup.policy") == 0 && strstr(v, "compact") != NULL)
			log_warn("topic %s has cleanup.policy=%s: compaction deletes a "
			    "row's older changes, and a change a consumer has not "
			    "applied yet can go with them; set cleanup.policy=delete",
			    topic, v);
		else if (strcmp(k, "retention.ms") == 0 && n != -1 &&
		    (cfg->retention_ms == -1 || n < cfg->retention_ms))
			log_warn("topic %s keeps records for %lld ms (retention.ms), "
			    "less than kafka.retention_ms (%lld): changes the "
			    "consumers have not applied by then are deleted (the "
			    "partition then stops: re-snapshot)", topic, n,
			    (long long)cfg->retention_ms);
		else if (strcmp(k, "retention.bytes") == 0 && n != -1)
			log_warn("topic %s deletes records beyond %lld bytes per "
			    "partition (retention.bytes), applied or not; set it to -1",
			    topic, n);
		else if (strcmp(k, "min.insync.replicas") == 0 &&
		    n < cfg->min_insync_replicas)
			log_warn("topic %s has min.insync.replicas=%lld, below "
			    "kafka.min_insync_replicas %d: an acknowledged change can "
			    "be lost with one broker", topic, n, cfg->min_insync_replicas);
		else if (strcmp(k, "unclean.leader.election.enable") == 0 &&
		    strcmp(v, "true") == 0)
			log_warn("topic %s allows unclean leader election: a replica "
			    "that missed acknowledged changes can become leader and "
			    "lose them; set it to false", topic);
	}
	if (replicas > 0 && replicas < cfg->replication_factor)
		log_warn("topic %s has %d replicas, fewer than "
		    "kafka.replication_factor %d", topic, replicas,
		    cfg->replication_factor);
	if (brokers >= 3 && replicas < 3)
		log_warn("topic %s has %d replicas on a cluster of %d brokers: one "
		    "lost broker can lose acknowledged changes; use 3 "
		    "(kafka.replication_factor, kafka.min_insync_replicas 2)",
		    topic, replicas, brokers);
out:
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_ConfigResource_destroy(res);
}

int
kfk_ensure_topic(rd_kafka_t *rk, const struct kfk_topic *t,
    const struct cfg *cfg, char *err, size_t errlen)
{
	char why[512], isr[16], ret[24];
	const char *settings[11];
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	int rc = PGR_RETRY;

	nt = rd_kafka_NewTopic_new(t->name, t->partitions, cfg->replication_factor,
	    why, sizeof(why));
	if (nt == NULL) {
		snprintf(err, errlen, "topic %s: %s", t->name, why);
		return PGR_CONFIG;
	}
	topic_settings(cfg, isr, ret, settings);
	for (int i = 0; settings[i] != NULL; i += 2) {
		if (rd_kafka_NewTopic_set_config(nt, settings[i], settings[i + 1]) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(err, errlen, "topic %s: cannot set %s", t->name,
			    settings[i]);
			rd_kafka_NewTopic_destroy(nt);
			return PGR_CONFIG;
		}
	}
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	/* Wait up to 30 s, in steps that serve the error callback (a login
	 * the broker refuses is logged while we wait), tell pgrelayd we are
	 * alive (waiting on a broker is not hung) and see a stop. */
	for (int waited = 0; (ev = rd_kafka_queue_poll(q, 500)) == NULL; ) {
		if (rd_kafka_type(rk) == RD_KAFKA_PRODUCER)
			rd_kafka_poll(rk, 0);
		worker_notify_alive(NULL);
		waited += 500;
		if (worker_stop || waited >= 30000)
			break;
	}
	if (ev == NULL) {
		snprintf(err, errlen, "topic %s: no answer from the brokers%s; check "
		    "kafka.brokers and kafka.properties", t->name,
		    worker_stop ? " before the stop" : " within 30 s");
		goto out;
	}
	if (rd_kafka_event_error(ev)) {
		snprintf(err, errlen, "topic %s: create: %s", t->name,
		    rd_kafka_event_error_string(ev));
		goto out;
	}
	const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
	size_t cnt = 0;
	const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
	rd_kafka_resp_err_t terr = cnt ? rd_kafka_topic_result_error(tr[0]) :
	    RD_KAFKA_RESP_ERR_UNKNOWN;

	if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_info("created topic %s with %d partitions, %d replicas, "
		    "min.insync.replicas %d, retention.ms %s", t->name, t->partitions,
		    cfg->replication_factor, cfg->min_insync_replicas, ret);
		rc = 0;
	} else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		int replicas = 0, brokers = 0;
		int have = topic_partitions(rk, t->name, &replicas, &brokers, err,
		    errlen);
		if (have == t->partitions || (have > 0 && t->partitions_key == NULL)) {
			check_topic_settings(rk, t->name, cfg, replicas, brokers);
			rc = 0;
		} else if (have > 0) {
			snprintf(err, errlen, "topic %s exists with %d partitions but "
			    "%s is %d; set %s to %d (a different count would move "
			    "keys between partitions and break per-row order)",
			    t->name, have, t->partitions_key, t->partitions,
			    t->partitions_key, have);
			rc = PGR_CONFIG;
		}
	} else {
		snprintf(err, errlen, "topic %s: create: %s", t->name,
		    cnt ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
		if (topic_error_is_config(terr))
			rc = PGR_CONFIG;
	}
out:
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	return rc;
}

int
kfk_topics_wait(rd_kafka_t *rk, const struct kfk_topic *t, int n,
    const struct cfg *cfg)
{
	char err[1024];
	int attempt = 0;

	for (int i = 0; i < n; ) {
		if (worker_stop)
			return PGR_RETRY;
		int rc = kfk_ensure_topic(rk, &t[i], cfg, err, sizeof(err));
		if (rc == 0) {
			i++;
			continue;
		}
		if (rc == PGR_CONFIG) {
			log_error("%s: a configuration error; not retrying", err);
			return PGR_CONFIG;
		}
		if (worker_stop)
			return PGR_RETRY;
		log_error("%s; retrying", err);
		worker_sleep_ms(worker_backoff_ms(attempt++));
	}
	return 0;
}

int
kfk_cdc_topics_wait(rd_kafka_t *rk, const struct cfg *cfg)
{
	struct kfk_topic *t = calloc((size_t)cfg->ntables + 1, sizeof(*t));
	int rc;

	if (t == NULL) {
		log_error("out of memory listing the CDC topics");
		return PGR_RETRY;
	}
	for (int i = 0; i < cfg->ntables; i++)
		t[i] = (struct kfk_topic){ cfg->tables[i].topic, cfg->partitions,
		    "kafka.partitions" };
	t[cfg->ntables] = (struct kfk_topic){ cfg->dlq_topic, 1, NULL };
	rc = kfk_topics_wait(rk, t, cfg->ntables + 1, cfg);
	free(t);
	return rc;
}

int
kfk_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
    const void *key, size_t keylen, void *val, size_t len, int flags,
    rd_kafka_headers_t *h, char *err, size_t errlen)
{
	rd_kafka_resp_err_t e;

	while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_PARTITION(partition),
	    RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE(val, len),
	    RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 50);	/* let deliveries drain the queue */
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(e));
		return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? PGR_DATA : PGR_RETRY;
	}
	return 0;
}

int
kfk_produce_dlq(rd_kafka_t *rk, const char *topic, const void *key,
    size_t keylen, const void *val, size_t len, const struct kfk_dlq_why *why,
    char *err, size_t errlen)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)why->norigin + 4);
	char name[96], ts[24];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(ts, sizeof(ts), "%lld",
	    (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
	rd_kafka_header_add(h, "__pgrelay.errors.stage", -1, why->stage, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.rule", -1, why->rule, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.reason", -1, why->reason, -1);
	for (int i = 0; i + 1 < 2 * why->norigin; i += 2) {
		snprintf(name, sizeof(name), "__pgrelay.errors.%s", why->origin[i]);
		rd_kafka_header_add(h, name, -1, why->origin[i + 1], -1);
	}
	rd_kafka_header_add(h, "__pgrelay.errors.ts_ms", -1, ts, -1);
	if (kfk_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, keylen,
	    (void *)val, len, RD_KAFKA_MSG_F_COPY, h, err, errlen) < 0) {
		rd_kafka_headers_destroy(h);
		return -1;
	}
	return 0;
}

void
kfk_acks_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct kfk_acks *a = opaque;

	(void)rk;
	if (msg->err) {
		a->failed++;
		a->last_err = msg->err;
	} else {
		a->acked++;
	}
}

int
kfk_acks_wait(rd_kafka_t *rk, struct kfk_acks *a, volatile sig_atomic_t *stop,
    char *err, size_t errlen)
{
	while (a->acked + a->failed < a->sent && !kfk_fatal()) {
		rd_kafka_flush(rk, 100);
		worker_notify_alive(NULL);	/* waiting on a broker is not hung */
		if (*stop && a->acked + a->failed < a->sent) {
			rd_kafka_flush(rk, 5000);
			if (a->acked + a->failed < a->sent) {
				snprintf(err, errlen, "stopping with %ld messages not "
				    "acknowledged; they are sent again after a restart",
				    a->sent - a->acked - a->failed);
				return -1;
			}
		}
	}
	if (kfk_fatal() || a->failed > 0) {
		snprintf(err, errlen, "%ld messages failed: %s", a->failed,
		    kfk_fatal() ? "fatal producer error" : rd_kafka_err2str(a->last_err));
		return -1;
	}
	return 0;
}

/* ---- transactions ---------------------------------------------------------
 *
 * Each call blocks for at most KFK_TXN_SLICE_MS, then calls tick and, if
 * tick returns 0, resumes (librdkafka 2.0.2 resumes init, commit and abort
 * after a retriable timeout: rdkafka_txnmgr.c).  librdkafka's error object
 * has three flags; what they ask of the caller (rdkafka.h, Transactional
 * producer API): */
#define KFK_TXN_SLICE_MS 500

enum txn_action { TXN_AGAIN, TXN_ABORT, TXN_DEAD };

/* Classifies e, writes "what: error" into err, destroys e. */
static enum txn_action
txn_error(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
	enum txn_action a;

	/* neither retriable nor abortable: treat as fatal, as rdkafka.h
	 * recommends (a wrong state, an authorization failure ...) */
	a = rd_kafka_error_is_fatal(e) ? TXN_DEAD :
	    rd_kafka_error_txn_requires_abort(e) ? TXN_ABORT :
	    rd_kafka_error_is_retriable(e) ? TXN_AGAIN : TXN_DEAD;
	snprintf(err, errlen, "kafka transaction: %s: %s: %s", what,
	    rd_kafka_error_name(e), rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return a;
}

int
kfk_txn_init(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (int n = 0;; n++) {
		rd_kafka_error_t *e = rd_kafka_init_transactions(rk, KFK_TXN_SLICE_MS);

		if (e == NULL)
			return 0;
		if (txn_error(e, "init", err, errlen) != TXN_AGAIN)
			return PGR_FATAL;
		if (n % 20 == 19)	/* every 10 s */
			log_warn("%s; still trying (the transaction coordinator "
			    "must answer before this producer sends)", err);
		if (tick(arg) < 0)
			return PGR_RETRY;
	}
}

int
kfk_txn_begin(rd_kafka_t *rk, char *err, size_t errlen)
{
	rd_kafka_error_t *e = rd_kafka_begin_transaction(rk);

	if (e == NULL)
		return 0;
	/* begin is local: a failure is a wrong state or a fatal error */
	txn_error(e, "begin", err, errlen);
	return PGR_FATAL;
}

int
kfk_txn_abort(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (;;) {
		rd_kafka_error_t *e = rd_kafka_abort_transaction(rk, KFK_TXN_SLICE_MS);

		if (e == NULL)
			return 0;
		if (txn_error(e, "abort", err, errlen) != TXN_AGAIN)
			return PGR_FATAL;
		if (tick(arg) < 0)
			return PGR_RETRY;
	}
}

int
kfk_txn_commit(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (;;) {
		rd_kafka_error_t *e = rd_kafka_commit_transaction(rk, KFK_TXN_SLICE_MS);
		char why[512];

		if (e == NULL)
			return 0;
		switch (txn_error(e, "commit", err, errlen)) {
		case TXN_DEAD:
			return PGR_FATAL;
		case TXN_ABORT:
			if (kfk_txn_abort(rk, tick, arg, why, sizeof(why)) == PGR_FATAL) {
				snprintf(err + strlen(err), errlen - strlen(err),
				    "; then %s", why);
				return PGR_FATAL;
			}
			return PGR_RETRY;
		case TXN_AGAIN:
			if (tick(arg) < 0) {
				/* given up: abort if it can (one slice, tick says
				 * stop), so that the partitions' readers are not held
				 * back until the transaction times out */
				kfk_txn_abort(rk, tick, arg, why, sizeof(why));
				return PGR_RETRY;
			}
			break;
		}
	}
}
