// Generated cases checked against NumPy (filled in by the oracle suite).
#include <gtest/gtest.h>
