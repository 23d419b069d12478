# The guest of the file-upload benchmark: the fixture installer ISO installed onto a qcow2
# (no provisioners, no post-processors). run.sh builds it once and boots it for both tools.
variable "iso_path" {
  type = string
}

variable "output_directory" {
  type = string
}

source "qemu" "guest" {
  iso_url          = var.iso_path
  iso_checksum     = "none"
  headless         = true
  memory           = 512
  disk_size        = "1024M"
  format           = "qcow2"
  output_directory = var.output_directory
  vm_name          = "guest.qcow2"
  http_directory   = "${path.root}/../../fixtures/http"
  boot_wait        = "1s"
  boot_command     = ["<waitFor \"boot:\">install ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter>"]
  ssh_username     = "vagrant"
  ssh_password     = "vagrant"
  ssh_timeout      = "10m"
  shutdown_command = "echo 'vagrant' | sudo -S poweroff"
}

build {
  sources = ["source.qemu.guest"]
}
