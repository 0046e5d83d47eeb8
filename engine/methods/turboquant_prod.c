// methods/turboquant_prod.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(tq_prod, "turboquant_prod")
