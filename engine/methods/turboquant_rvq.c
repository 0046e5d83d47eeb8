// methods/turboquant_rvq.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(tq_rvq, "turboquant_rvq")
