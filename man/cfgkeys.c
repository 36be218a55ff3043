/*
 * cfgkeys.c - prints config.c's schema, one key a line, for man/mkconfman
 * (a build tool, not installed).  Tab-separated:
 *
 *   GROUP.KEY  TYPE  REQUIRED(0|1)  DEFAULT  MIN  MAX  ENV
 *
 * DEFAULT is empty for a string without one, true/false for a boolean;
 * MIN and MAX are empty but for integers; ENV is empty when no variable
 * overrides the key.  The schema is the truth; this only reads it.
 */
#include <stdio.h>

#include "config.h"

int
main(void)
{
	struct cfg_key_info ki;

	for (size_t i = 0; cfg_schema_key(i, &ki) == 0; i++) {
		int integer = ki.type[0] == 'i';

		printf("%s.%s\t%s\t%d\t", ki.group, ki.name, ki.type, ki.required);
		if (ki.type[0] == 's')
			printf("%s", ki.def_str ? ki.def_str : "");
		else if (ki.type[0] == 'l')
			printf("()");		/* a list: none by default */
		else if (ki.type[0] == 'b')
			printf("%s", ki.def_int ? "true" : "false");
		else
			printf("%lld", ki.def_int);
		if (integer)
			printf("\t%lld\t%lld", ki.min, ki.max);
		else
			printf("\t\t");
		printf("\t%s\n", ki.env ? ki.env : "");
	}
	return ferror(stdout) ? 1 : 0;
}
