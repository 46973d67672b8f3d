/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Run the registered CUnit tests and count every way a run can go wrong:
 * failed assertions, suites whose init or cleanup failed (their tests
 * never run, which CU_get_number_of_failures() does not count), and tests
 * registered but not run.
 */
#ifndef BLKMIRROR_CU_RUN_H
#define BLKMIRROR_CU_RUN_H

#include <stdio.h>
#include <CUnit/Basic.h>

static inline int
cu_run(void)
{
	unsigned registered = CU_get_registry()->uiNumberOfTests, run, failed;

	CU_basic_run_tests();
	run = CU_get_number_of_tests_run();
	failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	if (run != registered) {
		fprintf(stderr, "%u of %u registered tests ran\n", run, registered);
		failed++;
	}
	if (CU_get_number_of_suites_failed() > 0)
		fprintf(stderr, "%u suites failed to initialize or clean up\n",
		    CU_get_number_of_suites_failed());
	return (int)failed;
}

#endif
