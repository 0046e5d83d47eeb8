#include "kvq.h"
int main(void) { return 0; }
