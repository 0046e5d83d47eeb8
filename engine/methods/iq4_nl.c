// methods/iq4_nl.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(iq4_nl, "iq4_nl")
