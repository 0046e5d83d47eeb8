// methods/q4_0_hadamard.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(q4_0_hadamard, "q4_0_hadamard")
