"""course_lib.layers."""
