"""course_lib.viz."""
