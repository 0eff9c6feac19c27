from redtrans.cli import main

main()
