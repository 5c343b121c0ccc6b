"""course_lib.ops."""
