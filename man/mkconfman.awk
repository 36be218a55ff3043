# mkconfman.awk - makes pgrelay.conf(5) from two sources that must agree.
#
#   awk -f man/mkconfman.awk KEYS.tsv etc/pgrelay.conf pgrelay.conf.5.in
#
# KEYS.tsv is config.c's schema as man/cfgkeys prints it: each key's type,
# range, default, and the environment variable overriding it.  The example
# file gives each key its meaning (the comment after it, and the comment
# lines under it) and each group its own (the comment after "group = {").
# The template's line @KEYS@ becomes the list of keys, @ENVIRONMENT@ the
# variables; every other line is copied (the @DIR@ paths are the install's
# business).  Fails, naming the file and line, when the example file lacks a
# key of the schema or has one the schema lacks, gives a key another
# default than the schema's, or leaves a key without a comment: the page
# cannot then be made, so it cannot be wrong.  POSIX awk (Debian's mawk).

function fail(msg) {
	print "mkconfman: " msg > "/dev/stderr"
	failed = 1
	exit 1
}

# Text for troff: a backslash, a minus, a leading dot or quote escaped.
function roff(s) {
	gsub(/\\/, "\\e", s)
	gsub(/-/, "\\-", s)
	gsub(/"/, "\\(dq", s)
	if (s ~ /^[.']/)
		s = "\\&" s
	return s
}

function comment_of(line,    i) {
	i = index(line, "#")
	if (i == 0)
		return ""
	line = substr(line, i + 1)
	sub(/^[ \t]+/, "", line)
	sub(/[ \t]+$/, "", line)
	return line
}

FNR == 1 { fileno++; if (fileno == 2) conf = FILENAME }

# ---- 1: the schema ------------------------------------------------------------
fileno == 1 {
	split($0, f, "\t")
	nkeys++
	order[nkeys] = f[1]
	type[f[1]] = f[2]; required[f[1]] = f[3]; def[f[1]] = f[4]
	min[f[1]] = f[5]; max[f[1]] = f[6]; env[f[1]] = f[7]
	g = f[1]; sub(/\..*/, "", g)
	if (!(g in seen_group)) {
		seen_group[g] = 1
		ngroups++
		groups[ngroups] = g
	}
	next
}

# ---- 2: the example file -------------------------------------------------------
fileno == 2 && /^[a-z_]+[ \t]*=[ \t]*\{/ {
	grp = $1
	gdoc[grp] = comment_of($0)
	last = "group"
	next
}
fileno == 2 && /^\};/ { grp = ""; last = ""; next }
fileno == 2 && grp != "" && /^[ \t]+[a-z_]+[ \t]*=/ {
	line = $0
	sub(/^[ \t]+/, "", line)
	name = line; sub(/[ \t]*=.*/, "", name)
	k = grp "." name
	val = line; sub(/^[^=]*=[ \t]*/, "", val)
	if (val ~ /^"/) {
		val = substr(val, 2)
		rest = substr(val, index(val, "\"") + 1)
		val = substr(val, 1, index(val, "\"") - 1)
	} else {
		rest = substr(val, index(val, ";"))
		val = substr(val, 1, index(val, ";") - 1)
	}
	if (k in file_val)
		fail(FILENAME ":" FNR ": " k ": listed twice")
	file_val[k] = val
	file_line[k] = FNR
	doc[k] = comment_of(rest)
	last = k
	next
}
fileno == 2 && grp != "" && /^[ \t]+#/ {
	if (last == "group")
		gdoc[grp] = gdoc[grp] " " comment_of($0)
	else if (last != "")
		doc[last] = doc[last] " " comment_of($0)
	next
}
fileno == 2 { last = ""; next }

# ---- 3: the template -------------------------------------------------------------
fileno == 3 && !checked {
	checked = 1
	for (k in file_val)
		if (!(k in type))
			fail(conf ":" file_line[k] ": " k ": not a key of config.c's schema")
	for (i = 1; i <= nkeys; i++) {
		k = order[i]
		if (!(k in file_val))
			fail(conf ": " k ": missing; config.c's schema has it, and the example lists every key with its default")
		# a list's example may show entries (cdc.tables)
		if (!required[k] && type[k] != "list" && file_val[k] != def[k])
			fail(conf ":" file_line[k] ": " k " = " file_val[k] ", but its default in config.c is " def[k])
		if (doc[k] == "")
			fail(conf ":" file_line[k] ": " k ": no comment to say what it is for")
	}
}
fileno == 3 && /^@KEYS@$/ {
	for (gi = 1; gi <= ngroups; gi++) {
		g = groups[gi]
		print ".SS " g
		if (gdoc[g] != "")
			print roff(gdoc[g]) "."
		for (i = 1; i <= nkeys; i++) {
			k = order[i]
			if (substr(k, 1, length(g) + 1) != g ".")
				continue
			print ".TP"
			if (required[k])
				print ".B " k
			else if (type[k] == "string")
				print ".BR " k " \" = \\(dq" roff(def[k]) "\\(dq\""
			else
				print ".BR " k " \" = " roff(def[k]) "\""
			print roff(doc[k])
			print ".br"
			t = type[k]
			if (t == "integer") {
				if (max[k] == "9223372036854775807")
					t = t ", at least " min[k]
				else
					t = t ", " min[k] " to " max[k]
			}
			if (required[k])
				t = t ", required (in the file or in " env[k] "); for example \"" file_val[k] "\""
			else if (env[k] != "")
				t = t "; " env[k] " overrides it"
			print "\\fI" roff(t) "\\fR"
		}
	}
	next
}
fileno == 3 && /^@ENVIRONMENT@$/ {
	for (i = 1; i <= nkeys; i++) {
		k = order[i]
		if (env[k] == "")
			continue
		print ".TP"
		print ".B " env[k]
		print "overrides"
		print ".BR " k " ."
	}
	next
}
fileno == 3 { print }

END {
	if (!failed && fileno != 3)
		fail("usage: awk -f mkconfman.awk KEYS.tsv pgrelay.conf TEMPLATE")
}
